"""``python -m tongbao``: the ``tongbao`` command line (see :mod:`tongbao.cli`)."""

from __future__ import annotations

import sys

from tongbao.cli import main

if __name__ == "__main__":
    sys.exit(main())
