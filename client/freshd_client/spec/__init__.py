"""The spec: what a digest is and how the index stores it.

Specified in docs/digest-spec.md and docs/index-schema.md.
"""
