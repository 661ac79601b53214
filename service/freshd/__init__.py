"""freshd: a daemon that keeps content digests of local Python packages current."""

__version__ = "0.1.0"
