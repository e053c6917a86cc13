"""Make ``polyglot_lion`` importable when a job runs from a Ray ``working_dir`` copy of the project."""

import os
import sys


def ensure_importable() -> None:
    try:
        import polyglot_lion  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "platform"))
