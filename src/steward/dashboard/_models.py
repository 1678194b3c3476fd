"""The models pages: every registered model with its versions and aliases; one model with its card and history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from steward.dashboard._common import guard, no_rows
from steward.errors import NotFound
from steward.registry import alias_history, latest_gate_verdict, list_models, read_card

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["group_models", "model_detail", "models_view"]


def _registered(ws: Workspace, name: str | None = None) -> list[dict[str, Any]]:
    # a local SQLite registry is never created just to show a page
    if not ws.model_registry.exists():
        return []
    try:
        return [v.to_dict() for v in list_models(ws, name)]
    except NotFound:  # no such registered model: an empty answer, not a failure
        if name:
            return []
        raise


def group_models(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Versions grouped by model, newest first, with each model's aliases."""
    models: dict[str, dict[str, Any]] = {}
    for v in versions:
        m = models.setdefault(v["name"], {"name": v["name"], "versions": [], "aliases": {}})
        m["versions"].append(v)
        for alias in v["aliases"]:
            m["aliases"][alias] = v["version"]
    for m in models.values():
        m["versions"].sort(key=lambda v: -int(v["version"]))
        m["latest"] = m["versions"][0] if m["versions"] else None
        m["champion"] = m["aliases"].get("champion")
        m["challenger"] = m["aliases"].get("challenger")
        m["previous"] = m["aliases"].get("previous")
    return sorted(models.values(), key=lambda m: str(m["name"]))


def models_view(ws: Workspace) -> dict[str, Any]:
    """Every registered model with its versions and aliases.

    Returns:
        ``{"models": [{name, versions, aliases, champion, challenger, previous, latest}], "unavailable": str | None}``.
    """
    versions, err = guard("registry", lambda: _registered(ws), no_rows())
    return {"models": group_models(versions), "unavailable": err}


def _render_markdown(text: str) -> str:
    """Markdown → HTML with raw HTML disabled (the card's text cannot inject markup)."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - markdown-it-py comes with rich
        import html

        return f"<pre>{html.escape(text)}</pre>"
    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def model_detail(ws: Workspace, name: str, version: int | None = None) -> dict[str, Any] | None:
    """One model: versions, aliases, alias history and the model card of ``version``.

    Args:
        ws: The workspace.
        name: Registered model name.
        version: The version whose card to show (default: the champion, else the newest).

    Returns:
        None when the model is not registered; else ``{name, versions, aliases, champion, challenger,
        selected, card_html, card, card_missing, history, gate, unavailable}``.
    """
    versions, err = guard("registry", lambda: _registered(ws, name), no_rows())
    if err is None and not versions:
        return None
    grouped = group_models(versions)
    m = grouped[0] if grouped else {"name": name, "versions": [], "aliases": {}, "champion": None, "challenger": None, "previous": None}
    known = {int(v["version"]) for v in m["versions"]}
    selected = version if version in known else m.get("champion") or (m["versions"][0]["version"] if m["versions"] else None)
    out: dict[str, Any] = {**m, "selected": selected, "card_html": None, "card": None, "card_missing": None, "unavailable": err}
    if selected is not None:
        result, card_err = guard("model card", lambda: read_card(ws, name, int(selected)), None)
        if result is not None:
            out["card_html"] = _render_markdown(result[0])
            out["card"] = result[1]
        else:
            out["card_missing"] = card_err
        out["gate"], _ = guard("gate", lambda: latest_gate_verdict(ws, name, int(selected)), None)
    out["history"], _ = guard("alias history", lambda: [c.to_dict() for c in reversed(alias_history(ws, name))], no_rows())
    return out
