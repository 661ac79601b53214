"""The HTTP API: FastAPI's routes and models, the guard in front of them, peer checks."""
