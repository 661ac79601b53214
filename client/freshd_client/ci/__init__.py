"""CI agents skip work whose inputs are unchanged by content (issue 23, docs/ci.md).

- ``graph``: the local dependency graph of a checkout, from its project files;
- ``lock``: the parts of ``uv.lock`` that pin a package's external dependencies;
- ``closure``: closure digests (tree, local dependencies, pins, environment);
- ``store``: where results live (``file://`` directory, ``s3://`` through boto3);
- ``records``: result records, signed with ``FRESHD_CACHE_KEY``, outputs by SHA-256;
- ``execute``: ``affected`` and ``exec``, in dependency order, up to N at once.
"""
