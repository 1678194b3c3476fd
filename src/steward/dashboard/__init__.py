"""The dashboard: page data (:mod:`steward.dashboard.data`), SVG charts (:mod:`steward.dashboard.charts`),
Jinja2 templates and static files. The HTTP edge is :mod:`steward.api.routes_dashboard`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC", "TEMPLATES"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
