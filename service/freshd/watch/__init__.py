"""Watching: file-system events, and proof that the watcher still sees."""
