"""The `committee` CLI: a member's tools (keys, registration, inspection, commit, reveal, a bot agent)."""
