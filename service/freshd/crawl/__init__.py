"""The crawl: building the index from the disk, in a process pool."""
