"""``python -m polyglot_lion.cli``: the same as the ``polyglot-lion`` command."""

import sys

from . import main

if __name__ == "__main__":  # the structure test imports every module; only `python -m` runs the command
    sys.exit(main())
