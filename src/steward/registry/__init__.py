"""Registry: model versions, aliases (challenger, champion, previous), the gate, verified loading."""

from steward.registry.gate import GateCheck, GateVerdict, gate_history, run_gate
from steward.registry.loader import load_verified_model, resolve_version
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
    "AliasChange",
    "GateCheck",
    "GateVerdict",
    "ModelVersionSummary",
    "alias_history",
    "build_manifest",
    "current_actor",
    "gate_history",
    "get_alias_version",
    "latest_gate_verdict",
    "list_models",
    "load_verified_model",
    "promote",
    "resolve_version",
    "rollback",
    "run_gate",
    "verify_artifacts",
]
