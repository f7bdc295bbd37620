"""Use cases of the service as plain functions over ports; no AWS imports."""
