"""The transports: asking a daemon's index, directly or over HTTP, and whom to believe."""
