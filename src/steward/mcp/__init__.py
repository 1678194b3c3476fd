"""The MCP edge: Steward's tools and documents for MCP clients (stdio and streamable HTTP).

Usage::

    from steward.mcp import build_server

    server = build_server(ws, role="viewer")
    server.run("stdio")
"""

from steward.mcp.server import BearerAuth, build_server, http_app, runbook_dir

__all__ = ["BearerAuth", "build_server", "http_app", "runbook_dir"]
