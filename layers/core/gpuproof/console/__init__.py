"""The web console: server-rendered pages of public data (gpuproof.console.app)."""
