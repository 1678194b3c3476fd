"""Model cards: what a model is for, what it was trained on, how well it does and for whom.

A card is a JSON document plus its Markdown rendering, written under
``ROOT/cards/NAME/vN.{md,json}`` and logged with the version's run (artifact
path ``card/``). Training writes a version's card when it registers it; the gate adds its verdict
when it runs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steward._primitives import format_value
from steward.errors import NotFound

if TYPE_CHECKING:
    from steward.workspace import Workspace

__all__ = ["card_paths", "log_card", "read_card", "render_markdown", "write_card"]

logger = logging.getLogger(__name__)


def card_paths(ws: Workspace, name: str, version: int) -> tuple[Path, Path]:
    """``(markdown, json)`` paths of a version's card."""
    d = ws.root / "cards" / name
    return d / f"v{version}.md", d / f"v{version}.json"


def _label_line(data: dict[str, Any], classes: list[Any]) -> str:
    """The label and what the task summarised about it (binary: positive rate; multiclass: class shares)."""
    if "positive_rate" in data:
        rate = data["positive_rate"]
        return f"- Label: `{data['label']}` (positive rate: train {format_value(rate['train'])}, validation {format_value(rate['validation'])})"
    parts = [
        f"{k}: train {format_value(v['train'])}, validation {format_value(v['validation'])}" for k, v in data.items() if _is_summary(v)
    ]
    head = f"- Label: `{data['label']}`" + (f", classes in model order: {', '.join(str(c) for c in classes)}" if classes else "")
    return head + (f" ({'; '.join(parts)})" if parts else "")


def _is_summary(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"train", "validation"} and not isinstance(value["train"], dict)


def _details(details: dict[str, Any]) -> list[str]:
    """Per-class precision/recall and the confusion matrix (multiclass), or the residual spread (regression)."""
    lines: list[str] = []
    per_class = details.get("per_class")
    if per_class:
        lines += ["### Per class", "", "| class | precision | recall | support |", "|---|---|---|---|"]
        lines += [f"| {c} | {format_value(e['precision'])} | {format_value(e['recall'])} | {e['support']} |" for c, e in per_class.items()]
        lines.append("")
    matrix = details.get("confusion_matrix")
    if matrix:
        classes = details.get("classes") or [str(i) for i in range(len(matrix))]
        lines += ["### Confusion matrix (rows: true, columns: predicted)", "", "| | " + " | ".join(classes) + " |"]
        lines.append("|---|" + "---|" * len(classes))
        lines += [f"| {classes[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(matrix)]
        lines.append("")
    if "mape_zero_targets_skipped" in details:
        lines += [f"MAPE leaves out {details['mape_zero_targets_skipped']} validation rows whose target is zero.", ""]
    return lines


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown (sections in a fixed order)."""
    lines: list[str] = [f"# Model card: {card['model']} v{card['version']}", ""]
    lines += [f"- Estimator: `{card['estimator']}` ({card['task']})", f"- Run: `{card['run_id']}`", f"- Created: {card['created_at']}", ""]
    lines += ["## Intended use", "", card.get("intended_use") or "Not stated in the spec.", ""]
    data = card["training_data"]
    lines += ["## Training data", ""]
    lines += [f"- `{ref}`" for ref in data["inputs"]] or ["- (no pinned inputs)"]
    lines += [
        "",
        f"- Rows: {data['rows']['train']} train, {data['rows']['validation']} validation (validation from {data['validation_from']})",
        _label_line(data, card.get("classes") or []),
        f"- Features ({len(data['features'])}): {', '.join(data['features'])}",
        "",
    ]
    metrics = card["metrics"]
    lines += ["## Metrics (validation)", "", f"Main metric: **{metrics['main']}**", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {format_value(v)} |" for k, v in metrics["overall"].items()]
    lines.append("")
    lines += _details(metrics.get("details") or {})
    for col, groups in card.get("slices", {}).items():
        lines += [f"### By {col}", "", f"| {col} | n | {metrics['main']} |", "|---|---|---|"]
        lines += [f"| {g} | {e['n']} | {format_value(e.get(metrics['main']))} |" for g, e in groups.items()]
        lines.append("")
    fair = card.get("fairness")
    lines += ["## Fairness", ""]
    if fair:
        lines += [
            f"Largest {fair['metric']} gap between groups of `{fair['column']}`: {format_value(fair['gap'])} "
            f"(best {fair['best_group']}, worst {fair['worst_group']}; limit {fair['max_gap']}, "
            f"{'within' if fair['within_limit'] else 'OVER'} the limit)",
            "",
        ]
    else:
        lines += ["No fairness column is named in the spec.", ""]
    imp = card.get("feature_importance") or {}
    lines += ["## Feature importance", "", f"Method: {imp.get('method', 'n/a')} on {imp.get('sample_size', 0)} validation rows", ""]
    lines += ["| feature | importance |", "|---|---|"]
    lines += [f"| {k} | {format_value(v)} |" for k, v in list(imp.get("importance", {}).items())[:20]]
    lines += ["", "## Limitations", ""]
    lines += [f"- {item}" for item in card.get("limitations", [])] or ["- None stated in the spec."]
    repro = card.get("reproducibility", {})
    lines += [
        "",
        "## Reproducibility",
        "",
        f"- Code: {repro.get('git', 'none')}",
        f"- Environment lock sha256: {repro.get('env_hash')}",
        f"- Validation prediction hash: {repro.get('prediction_hash')}",
        "",
    ]
    gate = card.get("gate")
    lines += ["## Gate", ""]
    if not gate:
        lines += ["Not run yet (`steward gate`).", ""]
    else:
        champion = gate.get("champion_version")
        lines += [
            f"**{'PASSED' if gate['passed'] else 'FAILED'}** against {'v' + str(champion) if champion else 'absolute thresholds'} "
            f"at {gate['created_at']} (verdict `{gate['verdict_id']}`)",
            "",
            "| check | result | challenger | champion | threshold |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c['name']} | {'pass' if c['passed'] else 'FAIL'} | {format_value(c['challenger'])} | {format_value(c['champion'])} | {format_value(c['threshold'])} |"
            for c in gate["checks"]
        ]
        lines.append("")
    return "\n".join(lines)


def write_card(ws: Workspace, card: dict[str, Any]) -> Path:
    """Write ``card`` as JSON and Markdown under ``ROOT/cards``; return the Markdown path."""
    md, js = card_paths(ws, card["model"], int(card["version"]))
    md.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(card, indent=2, sort_keys=False, default=str), encoding="utf-8")
    md.write_text(render_markdown(card), encoding="utf-8")
    return md


def log_card(ws: Workspace, run_id: str, name: str, version: int) -> None:
    """Log the written card files with the version's run (artifact path ``card/``)."""
    for path in card_paths(ws, name, version):
        ws.tracker.log_artifact(run_id, path, artifact_path="card")


def read_card(ws: Workspace, name: str, version: int) -> tuple[str, dict[str, Any]]:
    """``(markdown, card)`` of a version.

    Raises:
        NotFound: no card was written for that version.
    """
    md, js = card_paths(ws, name, version)
    if not js.exists():
        raise NotFound(f"no model card for {name} v{version}", hint="cards are written by 'steward train'")
    return md.read_text(encoding="utf-8"), json.loads(js.read_text(encoding="utf-8"))
