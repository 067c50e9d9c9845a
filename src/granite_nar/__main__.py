"""``python -m granite_nar``: the ``granite-nar`` command line."""

import sys

from .cli import main

sys.exit(main())
