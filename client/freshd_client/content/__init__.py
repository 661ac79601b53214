"""The content: which files make a package, and their digests."""
