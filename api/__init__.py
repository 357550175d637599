"""The CLO service's HTTP API (FastAPI), organised by domain."""
