"""The LMDB index, writer side, and the seals it keeps."""
