"""The ``steward`` command line: a thin edge over the library."""

from steward.cli.app import app, main

__all__ = ["app", "main"]
