"""``python -m freshd``: the ``freshd`` command, for when its script is not on PATH."""

import sys

from freshd.cli import main

sys.exit(main())
