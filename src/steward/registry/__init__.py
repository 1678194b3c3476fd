"""Registry: model versions, aliases (challenger, champion, previous), the gate, model cards, verified loading."""

from steward.registry.cards import card_paths, read_card, write_card
from steward.registry.gate import VALIDATION_ARTIFACT, GateCheck, GateVerdict, gate_history, run_gate
from steward.registry.loader import load_verified_model, resolve_version, verify_version
from steward.registry.manifest import build_manifest, verify_artifacts
from steward.registry.versions import (
    AliasChange,
    ModelVersionSummary,
    alias_history,
    current_actor,
    get_alias_version,
    latest_gate_verdict,
    list_models,
    promote,
    rollback,
)

__all__ = [
    "VALIDATION_ARTIFACT",
    "AliasChange",
    "GateCheck",
    "GateVerdict",
    "ModelVersionSummary",
    "alias_history",
    "build_manifest",
    "card_paths",
    "current_actor",
    "gate_history",
    "get_alias_version",
    "latest_gate_verdict",
    "list_models",
    "load_verified_model",
    "promote",
    "read_card",
    "resolve_version",
    "rollback",
    "run_gate",
    "verify_artifacts",
    "verify_version",
    "write_card",
]
