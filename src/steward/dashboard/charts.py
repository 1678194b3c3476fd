"""Server-rendered SVG charts: no JavaScript, readable with scripts disabled.

Each chart is a small, self-contained ``<svg>`` string with axes, tick labels,
a legend, optional horizontal threshold lines and vertical event markers (the
moments the loop acted). Every data point is a ``<circle class="pt">`` with a
``<title>`` so hovering shows its value in any browser.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from steward._primitives import to_utc

__all__ = ["PALETTE", "HLine", "Marker", "bar_chart", "line_chart", "parse_time"]

logger = logging.getLogger(__name__)

# series colours: colour-blind-friendly (Okabe-Ito first), keeping red and amber free for thresholds and alerts
PALETTE = ("#0072B2", "#009E73", "#CC79A7", "#56B4E9", "#8C564B", "#000000", "#7F7F7F", "#E69F00", "#17BECF", "#BCBD22")


@dataclass(frozen=True)
class HLine:
    """A horizontal reference line (a policy threshold)."""

    y: float
    label: str
    color: str = "#B42318"
    dashed: bool = True


@dataclass(frozen=True)
class Marker:
    """A vertical event marker (an action taken at time ``x``)."""

    x: datetime
    label: str
    color: str = "#7B2CBF"


def parse_time(text: object) -> datetime | None:
    """An ISO timestamp as an aware UTC datetime (None when unparseable)."""
    if not text:
        return None
    try:
        return to_utc(text if isinstance(text, datetime) else str(text))
    except ValueError:
        return None


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    if a >= 0.01:
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return f"{v:.2e}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]``."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = [round(start, 12)]
    # the last tick is at or above ``hi``, so nothing is drawn outside the plot area
    while ticks[-1] < hi - step * 1e-9 and len(ticks) < 15:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _time_label(t: datetime, span_s: float) -> str:
    if span_s <= 2 * 86400:
        return t.strftime("%m-%d %H:%M")
    return t.strftime("%Y-%m-%d")


class _Frame:
    """Plot area geometry and the data → pixel mapping."""

    def __init__(self, width: int, height: int, x0: float, x1: float, y0: float, y1: float, legend_rows: int) -> None:
        self.left, self.right, self.top = 58.0, 14.0, 12.0
        self.bottom = 42.0 + 16.0 * legend_rows
        self.width, self.height = width, height
        self.x0, self.x1 = x0, (x1 if x1 > x0 else x0 + 1.0)
        self.y0, self.y1 = y0, (y1 if y1 > y0 else y0 + 1.0)

    @property
    def plot_w(self) -> float:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> float:
        return self.height - self.top - self.bottom

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.plot_w

    def py(self, y: float) -> float:
        return self.top + (1.0 - (y - self.y0) / (self.y1 - self.y0)) * self.plot_h


def _legend(items: Sequence[tuple[str, str, str]], frame: _Frame) -> list[str]:
    """Legend entries ``(label, colour, kind)`` laid out in rows under the x axis."""
    out: list[str] = []
    x, row = frame.left, 0
    base = frame.height - 16.0 * _legend_rows(items, frame.width) - 4
    for label, color, kind in items:
        w = 22 + 6.6 * len(label)
        if x + w > frame.width - frame.right and x > frame.left:
            x, row = frame.left, row + 1
        y = base + 16 * row
        if kind == "line":
            out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 14:.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="2.5"/>')
        else:
            out.append(
                f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 14:.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="1.5" stroke-dasharray="4 3"/>'
            )
        out.append(f'<text x="{x + 18:.1f}" y="{y + 4:.1f}" class="legend">{_esc(label)}</text>')
        x += w + 10
    return out


def _legend_rows(items: Sequence[tuple[str, str, str]], width: int) -> int:
    if not items:
        return 0
    rows, x = 1, 58.0
    for label, _c, _k in items:
        w = 22 + 6.6 * len(label)
        if x + w > width - 14 and x > 58.0:
            rows, x = rows + 1, 58.0
        x += w + 10
    return rows


def line_chart(
    series: Mapping[str, Sequence[tuple[datetime, float]]],
    *,
    title: str = "",
    y_label: str = "",
    hlines: Sequence[HLine] = (),
    markers: Sequence[Marker] = (),
    width: int = 720,
    height: int = 260,
    y_min: float | None = None,
    y_max: float | None = None,
    dashed: Collection[str] = (),
) -> str:
    """A time-series line chart as an SVG string.

    Args:
        series: Name → ``(time, value)`` points (sorted here; NaN values dropped).
        title: Accessible title of the chart.
        y_label: Label of the y axis.
        hlines: Threshold lines.
        markers: Vertical event markers.
        width: Pixel width (the SVG scales to its container).
        height: Pixel height.
        y_min: Force the y axis to include this value.
        y_max: Force the y axis to include this value.
        dashed: Series drawn dashed (projections, estimates).

    Returns:
        ``<svg>`` markup (already escaped; mark it safe in templates).
    """
    clean: dict[str, list[tuple[datetime, float]]] = {}
    for name, pts in series.items():
        good = sorted((t, float(v)) for t, v in pts if v is not None and math.isfinite(float(v)))
        if good:
            clean[name] = good
    xs = [t.timestamp() for pts in clean.values() for t, _ in pts] + [m.x.timestamp() for m in markers]
    ys = [v for pts in clean.values() for _, v in pts] + [h.y for h in hlines]
    ys += [v for v in (y_min, y_max) if v is not None]
    if not xs or not ys:
        return _empty_svg(title, width)
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    # never pad a non-negative quantity (a rate, a distance) below zero
    bottom = lo if y_min is not None and lo >= y_min else max(lo - pad, 0.0) if lo >= 0 else lo - pad
    top = hi if y_max is not None and hi <= y_max else hi + pad
    ticks = _nice_ticks(bottom, top)
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1:
        x0, x1 = x0 - 1800, x1 + 1800
    span = x1 - x0
    x0, x1 = x0 - span * 0.03, x1 + span * 0.03
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(clean)}
    legend_items = [(n, colors[n], "dash" if n in dashed else "line") for n in clean] + [(h.label, h.color, "dash") for h in hlines]
    legend_items += _marker_legend(markers)
    frame = _Frame(width, height, x0, x1, ticks[0], ticks[-1], _legend_rows(legend_items, width))
    parts = [_open_svg(width, height, title, sum(len(p) for p in clean.values()))]
    parts += _axes(frame, ticks, y_label)
    for tx in _time_ticks(x0, x1):
        px = frame.px(tx)
        label = _time_label(datetime.fromtimestamp(tx, UTC), span)
        parts.append(
            f'<line x1="{px:.1f}" y1="{frame.top + frame.plot_h:.1f}" x2="{px:.1f}" y2="{frame.top + frame.plot_h + 4:.1f}" class="axis"/>'
        )
        parts.append(f'<text x="{px:.1f}" y="{frame.top + frame.plot_h + 17:.1f}" class="tick" text-anchor="middle">{_esc(label)}</text>')
    for h in hlines:
        py = frame.py(h.y)
        dash = ' stroke-dasharray="6 4"' if h.dashed else ""
        parts.append(
            f'<line class="threshold" x1="{frame.left:.1f}" y1="{py:.1f}" x2="{frame.left + frame.plot_w:.1f}" y2="{py:.1f}" '
            f'stroke="{h.color}" stroke-width="1.5"{dash}><title>{_esc(h.label)}: {_fmt(h.y)}</title></line>'
        )
    for m in markers:
        px = frame.px(m.x.timestamp())
        parts.append(
            f'<g class="marker"><line x1="{px:.1f}" y1="{frame.top:.1f}" x2="{px:.1f}" y2="{frame.top + frame.plot_h:.1f}" '
            f'stroke="{m.color}" stroke-width="1.5" stroke-dasharray="2 3"/>'
            f'<path d="M{px - 5:.1f},{frame.top:.1f} L{px + 5:.1f},{frame.top:.1f} L{px:.1f},{frame.top + 8:.1f} Z" fill="{m.color}"/>'
            f"<title>{_esc(m.label)} at {m.x.strftime('%Y-%m-%d %H:%M')} UTC</title></g>"
        )
    for name, pts in clean.items():
        c = colors[name]
        d = " ".join(f"{'M' if i == 0 else 'L'}{frame.px(t.timestamp()):.1f},{frame.py(v):.1f}" for i, (t, v) in enumerate(pts))
        dash = ' stroke-dasharray="7 5"' if name in dashed else ""
        parts.append(f'<path class="series" d="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for t, v in pts:
            parts.append(
                f'<circle class="pt" cx="{frame.px(t.timestamp()):.1f}" cy="{frame.py(v):.1f}" r="3.2" fill="{c}">'
                f"<title>{_esc(name)}: {_fmt(v)} at {t.strftime('%Y-%m-%d %H:%M')} UTC</title></circle>"
            )
    parts += _legend(legend_items, frame)
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    days: Sequence[str],
    stacks: Mapping[str, Sequence[float]],
    *,
    title: str = "",
    y_label: str = "",
    hlines: Sequence[HLine] = (),
    width: int = 720,
    height: int = 260,
) -> str:
    """A stacked bar chart (one bar per category on the x axis, e.g. per day).

    Args:
        days: X categories, in order.
        stacks: Stack name → one value per category.
        title: Accessible title.
        y_label: Label of the y axis.
        hlines: Reference lines (a daily budget, say).
        width: Pixel width.
        height: Pixel height.
    """
    if not days or not stacks:
        return _empty_svg(title, width)
    totals = [sum(float(s[i]) for s in stacks.values()) for i in range(len(days))]
    hi = max(totals + [h.y for h in hlines] + [0.0])
    ticks = _nice_ticks(0.0, hi * 1.08 if hi > 0 else 1.0)
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(stacks)}
    legend_items = [(n, colors[n], "line") for n in stacks] + [(h.label, h.color, "dash") for h in hlines]
    frame = _Frame(width, height, 0.0, float(len(days)), ticks[0], ticks[-1], _legend_rows(legend_items, width))
    n_bars = sum(1 for t in totals if t > 0)
    parts = [_open_svg(width, height, title, n_bars)]
    parts += _axes(frame, ticks, y_label)
    slot = frame.plot_w / len(days)
    bar_w = max(2.0, min(36.0, slot * 0.7))
    every = max(1, math.ceil(len(days) / 10))
    for i, day in enumerate(days):
        cx = frame.px(i + 0.5)
        base = 0.0
        for name, values in stacks.items():
            v = float(values[i])
            if v <= 0:
                continue
            y_top, y_bot = frame.py(base + v), frame.py(base)
            parts.append(
                f'<rect class="bar pt" x="{cx - bar_w / 2:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" height="{max(y_bot - y_top, 0.5):.1f}" '
                f'fill="{colors[name]}"><title>{_esc(day)} {_esc(name)}: {_fmt(v)}</title></rect>'
            )
            base += v
        if i % every == 0:
            parts.append(
                f'<text x="{cx:.1f}" y="{frame.top + frame.plot_h + 17:.1f}" class="tick" text-anchor="middle">{_esc(day[5:])}</text>'
            )
    for h in hlines:
        py = frame.py(h.y)
        parts.append(
            f'<line class="threshold" x1="{frame.left:.1f}" y1="{py:.1f}" x2="{frame.left + frame.plot_w:.1f}" y2="{py:.1f}" '
            f'stroke="{h.color}" stroke-width="1.5" stroke-dasharray="6 4"><title>{_esc(h.label)}: {_fmt(h.y)}</title></line>'
        )
    parts += _legend(legend_items, frame)
    parts.append("</svg>")
    return "".join(parts)


def _marker_legend(markers: Sequence[Marker]) -> list[tuple[str, str, str]]:
    seen: dict[str, str] = {}
    for m in markers:
        kind = m.label.split(":", 1)[0]
        seen.setdefault(kind, m.color)
    return [(f"action: {k}", c, "dash") for k, c in seen.items()]


def _open_svg(width: int, height: int, title: str, points: int) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_esc(title)}" data-points="{points}" preserveAspectRatio="xMidYMid meet"><title>{_esc(title)}</title>'
    )


def _axes(frame: _Frame, ticks: Sequence[float], y_label: str) -> list[str]:
    out = [
        f'<rect x="{frame.left:.1f}" y="{frame.top:.1f}" width="{frame.plot_w:.1f}" height="{frame.plot_h:.1f}" class="plot-bg"/>',
    ]
    for t in ticks:
        py = frame.py(t)
        out.append(f'<line x1="{frame.left:.1f}" y1="{py:.1f}" x2="{frame.left + frame.plot_w:.1f}" y2="{py:.1f}" class="grid"/>')
        out.append(f'<text x="{frame.left - 6:.1f}" y="{py + 4:.1f}" class="tick" text-anchor="end">{_esc(_fmt(t))}</text>')
    bottom = frame.top + frame.plot_h
    out.append(f'<line x1="{frame.left:.1f}" y1="{bottom:.1f}" x2="{frame.left + frame.plot_w:.1f}" y2="{bottom:.1f}" class="axis"/>')
    out.append(f'<line x1="{frame.left:.1f}" y1="{frame.top:.1f}" x2="{frame.left:.1f}" y2="{bottom:.1f}" class="axis"/>')
    if y_label:
        cy = frame.top + frame.plot_h / 2
        out.append(
            f'<text x="14" y="{cy:.1f}" class="axis-label" text-anchor="middle" transform="rotate(-90 14 {cy:.1f})">{_esc(y_label)}</text>'
        )
    return out


def _time_ticks(x0: float, x1: float, n: int = 6) -> list[float]:
    span = x1 - x0
    steps = [60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400]
    step = next((s for s in steps if span / s <= n), steps[-1])
    first = math.ceil(x0 / step) * step
    return [float(t) for t in range(int(first), int(x1) + 1, step)]


def _empty_svg(title: str, width: int) -> str:
    return (
        f'<svg class="chart empty" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} 60" role="img" aria-label="{_esc(title)}" '
        f'data-points="0"><text x="{width / 2:.0f}" y="34" text-anchor="middle" class="tick">no data points yet</text></svg>'
    )
