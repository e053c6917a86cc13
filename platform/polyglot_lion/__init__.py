"""Polyglot-Lion platform: multilingual ASR for Singapore (en, zh, ta, ms) on Ray.

Importing this package has no side effects; every stage lives in its own module:
``data`` (corpus import, store, balancing, synthetic speech), and later ``model``,
``train``, ``inference``, ``evaluation``, ``serving``, ``tracking``.
"""

__version__ = "0.1.0"
