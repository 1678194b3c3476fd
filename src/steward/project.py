"""Creating projects: ``steward init DIR --example NAME``."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from steward.errors import Conflict
from steward.examples import example_dir
from steward.spec import SPEC_FILENAME

__all__ = ["init_project"]

logger = logging.getLogger(__name__)

_SKIP = {"__pycache__", ".steward", "landing"}


def init_project(target: Path, example: str = "flights", *, force: bool = False) -> Path:
    """Copy a bundled example project into ``target``.

    Args:
        target: Directory to create (may exist, but must not hold a spec unless ``force``).
        example: Name of the bundled example.
        force: Overwrite an existing ``steward.yaml`` and contracts.

    Returns:
        The path of the new ``steward.yaml``.

    Raises:
        Conflict: ``target`` already holds a spec and ``force`` is false.
    """
    src = example_dir(example)
    spec_path = target / SPEC_FILENAME
    if spec_path.exists() and not force:
        raise Conflict(f"{spec_path} already exists", hint="pick another directory or pass --force to overwrite")
    target.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name in _SKIP or item.suffix == ".pyc":
            continue
        dest = target / item.name
        if item.is_dir():
            shutil.copytree(item, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, dest)
    logger.info("created %s from example %s", spec_path, example)
    return spec_path
