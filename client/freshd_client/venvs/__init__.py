"""The installer integration: venvs, stamps, ``freshd check`` and ``freshd run``."""
