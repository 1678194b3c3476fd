"""Optional client packages, imported on first use with an error that names the extra to install.

Scale-out backends need clients that a laptop install does not: ``psycopg`` (``steward[postgres]``),
``redis`` (``steward[redis]``), ``ray`` (``steward[ray]``), ``chromadb`` (``steward[chroma]``),
``boto3`` (``steward[s3]``), and the LLM stack (``steward[llm]``). The lock installs every one of them,
so the test suite covers every backend; a user who installs only the core gets
:class:`~steward.errors.MissingExtra` naming the key that asked for the backend and the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from steward.errors import MissingExtra

__all__ = ["optional_import"]


def optional_import(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtra` naming ``steward[extra]``.

    Args:
        module: The importable module (``"redis"``, ``"psycopg"``).
        extra: The extra of the ``steward`` package that installs it.
        needed_for: What asked for it, naming the spec key where there is one
            (``"storage.online_store_url (a Redis online store)"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{needed_for} needs the '{module}' package, which is not installed",
            hint=f"pip install 'steward[{extra}]'",
            details={"module": module, "extra": extra},
        ) from exc
