"""The service-side CLIs: `committee` (a member's tools: keys, registration, inspection, commit,
reveal, a bot agent), `gpuproof-ops` (operator commands) and the output helpers every CLI shares."""
