"""Polyglot-Lion platform: multilingual ASR for Singapore (en, zh, ta, ms) on Ray.

Importing this package has no side effects; every stage lives in its own subpackage: ``data`` (corpus
import, store, balancing, synthetic speech), ``model``, ``train``, ``inference``, ``evaluation``, ``serving``,
``tracking`` (MLflow runs and the model registry) and ``testing`` (dummies for tests, benchmarks and the demo).
"""

__version__ = "0.1.0"
