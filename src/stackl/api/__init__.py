"""The FastAPI process: REST API (0.5 paths and new ones) and the web UI."""
