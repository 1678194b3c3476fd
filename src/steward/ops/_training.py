"""Training operations: train (and register), reproduce (with the verdict), gate.

``train`` registers each run as the model's ``challenger``; ``run_gate`` judges a challenger
against the champion and records the verdict; ``reproduce`` retrains a run from its pinned
inputs and, unless asked for the comparison only, raises
:class:`~steward.errors.NotReproducible` when the predictions differ, so a script, the CLI
and an agent get the same verdict with the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from steward import registry
from steward import training as _training
from steward.errors import NotFound
from steward.registry import GateVerdict
from steward.training import ReproduceResult, TrainResult

if TYPE_CHECKING:
    from steward._primitives import Progress
    from steward.features.training_set import TrainingSet
    from steward.workspace import Workspace

Builder = Callable[..., "TrainingSet"]
"""Builds a training set: ``builder(ws, pins=None)`` for the newest data, ``pins={table: version}`` to rebuild."""

__all__ = ["reproduce", "run_gate", "train"]


def train(ws: Workspace, *, model: str | None = None, builder: Builder | None = None, progress: Progress | None = None) -> TrainResult:
    """Build the pinned training set from the newest data, train (and search), track the run, register it as ``challenger``.

    Args:
        ws: The workspace.
        model: The model to train; it must be the project's (``model.name``). Default: the project's.
        builder: Builds the training set (default: the features stage's point-in-time set).
        progress: Told of each stage of the run.

    Raises:
        NotFound: ``model`` is not the model this project trains.
    """
    if model is not None and model != ws.spec.model.name:
        raise NotFound(f"model {model!r} is not the model this project trains ({ws.spec.model.name})")
    return _training.train(ws, progress=progress, builder=builder)


def reproduce(
    ws: Workspace, run_id: str, *, strict: bool = True, builder: Builder | None = None, progress: Progress | None = None
) -> ReproduceResult:
    """Rebuild a run's training set from its pins, retrain with its recorded settings, and compare prediction hashes.

    Args:
        ws: The workspace.
        run_id: The tracked run to reproduce.
        strict: Raise when the run does not reproduce (False: return the comparison; its
            :attr:`~steward.training.ReproduceResult.reproducible` is the verdict).
        builder: Rebuilds the training set from the run's pins (default: the features stage's).
        progress: Told of each stage.

    Raises:
        NotReproducible: ``strict`` and the validation predictions hash differently (``training.not_reproducible``).
        NotFound: no such run, or it was not made by ``steward train``.
    """
    result = _training.reproduce(ws, run_id, builder=builder, progress=progress)
    if strict:
        result.raise_for_mismatch()
    return result


def run_gate(ws: Workspace, model: str | None = None, *, version: int | None = None, actor: str | None = None) -> GateVerdict:
    """Gate a challenger (default: the ``challenger`` alias) against the champion; the verdict is recorded and returned.

    Call :meth:`~steward.registry.GateVerdict.raise_for_failure` to block on a failed verdict.

    Raises:
        NotFound: no challenger.
        Conflict: the challenger is the champion.
    """
    return registry.run_gate(ws, model, version=version, actor=actor)
