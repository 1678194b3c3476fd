"""Steward's own operations as tools: read, propose and write.

Write tools are the platform's operations: each calls the same :mod:`steward.ops` function
as the CLI and the HTTP API (``promote_model`` is ``steward promote``, ``rollback_model`` is
``steward rollback``, ``start_retrain`` is ``steward train``). Read tools call the owning
stage's query functions. (The CLI imports this module only when an agent or MCP command runs,
so ``steward --help`` does not pay for it.)

Read: ``list_models``, ``alias_history``, ``model_card``, ``rollout_status``,
``drift_report``, ``metrics_summary``, ``audit_search``, ``docs_search``.
Propose (drafts, change nothing): ``propose_rollback``, ``propose_retrain``.
Write (need an approval): ``rollback_model``, ``promote_model``, ``start_retrain``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from steward import ops
from steward.errors import NotFound
from steward.llm.gateway import cost_report
from steward.llm.rag import retrieve
from steward.monitoring import latest_statuses, list_actions, list_checks, list_verdicts
from steward.registry import alias_history, list_models, read_card
from steward.serving.rollout import RolloutController
from steward.tools.registry import Tool, ToolContext, ToolParams, ToolRegistry

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["builtin_tools", "default_registry", "tools_for_role"]

logger = logging.getLogger(__name__)

_NAME = r"^[A-Za-z0-9_.\-]{1,128}$"


# -- parameter models ----------------------------------------------------------------------------------------------------------
class ListModelsParams(ToolParams):
    """Arguments of ``list_models``."""

    model: str | None = Field(default=None, pattern=_NAME, description="Only this registered model (default: every model).")


class ModelParams(ToolParams):
    """Arguments naming one registered model."""

    model: str = Field(pattern=_NAME, description="Registered model name, e.g. flights_delay.")


class AliasHistoryParams(ToolParams):
    """Arguments of ``alias_history``."""

    model: str = Field(pattern=_NAME, description="Registered model name.")
    limit: int = Field(default=10, ge=1, le=200, description="Newest changes to return.")


class ModelCardParams(ToolParams):
    """Arguments of ``model_card``."""

    model: str = Field(pattern=_NAME, description="Registered model name.")
    version: int = Field(ge=1, description="Model version.")


class DriftParams(ToolParams):
    """Arguments of ``drift_report``."""

    model: str = Field(pattern=_NAME, description="Model name as logged by the server.")
    limit: int = Field(default=3, ge=1, le=50, description="Newest monitoring verdicts to return.")


class MetricsParams(ToolParams):
    """Arguments of ``metrics_summary``."""

    days: int = Field(default=7, ge=1, le=90, description="Days of LLM spend to summarise.")


class AuditParams(ToolParams):
    """Arguments of ``audit_search``."""

    action: str | None = Field(default=None, max_length=100, description="Only this action, e.g. registry.alias or agent.run.")
    model: str | None = Field(default=None, pattern=_NAME, description="Only entries about this model.")
    text: str | None = Field(default=None, max_length=200, description="Only entries whose subject or actor contains this text.")
    limit: int = Field(default=20, ge=1, le=200, description="Newest entries to return.")


class DocsParams(ToolParams):
    """Arguments of ``docs_search``."""

    query: str = Field(min_length=2, max_length=500, description="What to look for in the docs and runbooks.")
    collection: str = Field(default="docs", pattern=_NAME, description="RAG collection (docs holds Steward's docs and runbooks).")
    k: int = Field(default=4, ge=1, le=20, description="Passages to return.")


class ReasonedModelParams(ToolParams):
    """Arguments naming a model and why."""

    model: str = Field(pattern=_NAME, description="Registered model name.")
    reason: str = Field(min_length=3, max_length=500, description="Why, in one sentence (recorded in the audit trail).")


class PromoteParams(ToolParams):
    """Arguments of ``promote_model``."""

    model: str = Field(pattern=_NAME, description="Registered model name.")
    version: int = Field(ge=1, description="The version to make champion (it needs a passing gate verdict).")
    reason: str = Field(min_length=3, max_length=500, description="Why, in one sentence (recorded in the audit trail).")


# -- read ----------------------------------------------------------------------------------------------------------------------
def _list_models(ws: Workspace, p: ListModelsParams, ctx: ToolContext) -> Any:
    try:
        versions = list_models(ws, p.model)
    except NotFound:
        if p.model:
            raise NotFound(f"no registered model named {p.model!r}", hint="call list_models without a model to see them all") from None
        raise
    if p.model and not versions:
        raise NotFound(f"no registered model named {p.model!r}", hint="call list_models without a model to see them all")
    return {"versions": [v.to_dict() for v in versions]}


def _alias_history(ws: Workspace, p: AliasHistoryParams, ctx: ToolContext) -> Any:
    changes = alias_history(ws, p.model)
    return {"model": p.model, "changes": [c.to_dict() for c in changes[-p.limit :]]}


def _model_card(ws: Workspace, p: ModelCardParams, ctx: ToolContext) -> Any:
    markdown, card = read_card(ws, p.model, p.version)
    return {"model": p.model, "version": p.version, "card": card, "markdown": markdown}


def _rollout_status(ws: Workspace, p: ModelParams, ctx: ToolContext) -> Any:
    st = ops.rollout_status(ws, p.model).rollout
    if st is None:
        return {"model": p.model, "rollout": None, "routing": "champion only (no rollout recorded)"}
    return {"model": p.model, "rollout": st.to_dict(), "active": st.active}


def _drift_report(ws: Workspace, p: DriftParams, ctx: ToolContext) -> Any:
    verdicts = list_verdicts(ws, p.model, limit=p.limit)
    checks = list_checks(ws, [v["verdict_id"] for v in verdicts])
    flagged = [c for c in checks if c.get("status") not in ("ok", "pass", "passed")]
    actions = list_actions(ws, p.model)[-10:]
    latest = verdicts[-1]["status"] if verdicts else None
    return {"model": p.model, "latest_status": latest, "verdicts": verdicts, "flagged_checks": flagged, "actions": actions}


def _metrics_summary(ws: Workspace, p: MetricsParams, ctx: ToolContext) -> Any:
    report = cost_report(ws.metadata, days=p.days)
    llm = asdict(report) if is_dataclass(report) else report
    active = [st.to_dict() for st in RolloutController(ws).all_active()]
    return {"llm_spend": llm, "active_rollouts": active, "latest_monitor_status": latest_statuses(ws)}


def _audit_search(ws: Workspace, p: AuditParams, ctx: ToolContext) -> Any:
    entries = ws.audit.entries(model=p.model, action=p.action, limit=None if p.text else p.limit)
    if p.text:
        needle = p.text.lower()
        entries = [e for e in entries if needle in e.subject.lower() or needle in e.actor.lower()]
    entries = entries[-p.limit :]
    return {
        "entries": [
            {"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action, "subject": e.subject, "model": e.model, "payload": e.payload}
            for e in entries
        ]
    }


def _docs_search(ws: Workspace, p: DocsParams, ctx: ToolContext) -> Any:
    if p.collection not in ws.spec.llm.rag.collections:
        raise NotFound(f"no RAG collection {p.collection!r}", hint=f"known: {', '.join(sorted(ws.spec.llm.rag.collections))}")
    found = retrieve(ws, p.query, collection=p.collection, k=p.k)
    return {
        "query": p.query,
        "passages": [{"source": h.source, "title": h.title, "text": h.text[:800], "score": round(h.score, 4)} for h in found.hits],
    }


# -- propose -------------------------------------------------------------------------------------------------------------------
def _latest_verdict(ws: Workspace, model: str) -> dict[str, Any] | None:
    verdicts = list_verdicts(ws, model, limit=1)
    return verdicts[-1] if verdicts else None


def _propose_rollback(ws: Workspace, p: ReasonedModelParams, ctx: ToolContext) -> Any:
    aliases = ops.model_aliases(ws, p.model)
    verdict = _latest_verdict(ws, p.model)
    feasible = aliases["previous"] is not None
    return {
        "proposal": "rollback",
        "model": p.model,
        "feasible": feasible,
        "from_version": aliases["champion"],
        "to_version": aliases["previous"],
        "reason": p.reason,
        "evidence": {"latest_monitor_status": verdict["status"] if verdict else None, "aliases": aliases},
        "next_step": (
            {"tool": "rollback_model", "arguments": {"model": p.model, "reason": p.reason}, "needs": "an admin's one-time approval"}
            if feasible
            else "no previous champion: promote a version instead"
        ),
    }


def _propose_retrain(ws: Workspace, p: ReasonedModelParams, ctx: ToolContext) -> Any:
    if p.model != ws.spec.model.name:
        raise NotFound(f"model {p.model!r} is not the model this project trains ({ws.spec.model.name})")
    verdict = _latest_verdict(ws, p.model)
    return {
        "proposal": "retrain",
        "model": p.model,
        "reason": p.reason,
        "evidence": {"latest_monitor_status": verdict["status"] if verdict else None},
        "plan": ["rebuild the pinned training set from the latest silver/gold versions", "train (challenger)", "gate vs champion"],
        "next_step": {
            "tool": "start_retrain",
            "arguments": {"model": p.model, "reason": p.reason},
            "needs": "an admin's one-time approval",
        },
    }


# -- write ---------------------------------------------------------------------------------------------------------------------
def _rollback(ws: Workspace, p: ReasonedModelParams, ctx: ToolContext) -> Any:
    move = ops.rollback(ws, p.model, reason=p.reason, actor=ctx.actor)
    return {"model": p.model, "changes": [c.to_dict() for c in move.changes], "aliases": ops.model_aliases(ws, p.model)}


def _promote(ws: Workspace, p: PromoteParams, ctx: ToolContext) -> Any:
    move = ops.promote(ws, p.model, p.version, reason=p.reason, actor=ctx.actor)
    return {"model": p.model, "changes": [c.to_dict() for c in move.changes], "aliases": ops.model_aliases(ws, p.model)}


def _retrain(ws: Workspace, p: ReasonedModelParams, ctx: ToolContext) -> Any:
    result = ops.train(ws, model=p.model)
    return {
        "model": result.model_name,
        "run_id": result.run_id,
        "version": result.version,
        "metrics": result.metrics,
        "data_versions": result.data_versions,
        "next_step": "run the gate, then promote_model if it passes",
    }


def builtin_tools() -> list[Tool]:
    """Every built-in tool."""
    return [
        Tool("list_models", "List registered model versions with their aliases (champion, challenger, previous), main metric and gate result.",
             "read", ListModelsParams, _list_models),
        Tool("alias_history", "Recent alias changes of a model: who moved champion/previous/challenger, when and why.",
             "read", AliasHistoryParams, _alias_history),
        Tool("model_card", "The model card of one version: data versions, metrics by slice, fairness, intended use, limitations.",
             "read", ModelCardParams, _model_card),
        Tool("rollout_status", "The latest rollout of a model (canary/A-B/shadow/blue-green): state, weight, steps and why.",
             "read", ModelParams, _rollout_status),
        Tool("drift_report", "Recent monitoring verdicts of a model: drift and performance checks that warned or failed, and actions asked for.",
             "read", DriftParams, _drift_report),
        Tool("metrics_summary", "A platform summary: LLM spend by key/model/day, active rollouts, latest monitoring status per model.",
             "read", MetricsParams, _metrics_summary),
        Tool("audit_search", "Search the tamper-evident audit trail by action, model or text.", "read", AuditParams, _audit_search),
        Tool("docs_search", "Search Steward's documentation and runbooks (RAG retrieval); returns passages with their sources.",
             "read", DocsParams, _docs_search),
        Tool("propose_rollback", "Draft a rollback of a model's champion to its previous version, with the evidence. Changes nothing.",
             "propose", ReasonedModelParams, _propose_rollback),
        Tool("propose_retrain", "Draft a retrain of the project's model, with the evidence. Changes nothing.",
             "propose", ReasonedModelParams, _propose_retrain),
        Tool("rollback_model", "Roll a model back: champion ← previous. Needs an admin's one-time approval of this exact call.",
             "write", ReasonedModelParams, _rollback),
        Tool("promote_model", "Make a gated version the champion. Needs an admin's one-time approval of this exact call.",
             "write", PromoteParams, _promote),
        Tool("start_retrain", "Retrain the project's model on the latest data (registers a challenger). Needs an admin's one-time approval.",
             "write", ReasonedModelParams, _retrain),
    ]  # fmt: skip


_default: ToolRegistry | None = None


def default_registry() -> ToolRegistry:
    """The process-wide registry of built-in tools."""
    global _default
    if _default is None:
        _default = ToolRegistry(builtin_tools())
    return _default


def tools_for_role(role: str) -> list[Tool]:
    """The built-in tools a role may call."""
    return default_registry().for_role(role)
