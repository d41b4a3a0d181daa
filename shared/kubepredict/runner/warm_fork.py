"""Imported by the local runner's fork server only (the last entry of ``runner/local.PRELOAD``): from
then on it loads, before each fork, the model of the worker it forks (runner/warm_models.py)."""

from . import warm_models

warm_models.install()
