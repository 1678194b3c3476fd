"""The HTTP edge: a FastAPI app factory over the library."""

from steward.api.app import create_app

__all__ = ["create_app"]
