"""``steward sbom``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steward.cli.app import console

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``sbom`` to the app."""

    @app.command()
    def sbom(
        output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the CycloneDX JSON.")] = Path("sbom.cdx.json"),
        lock: Annotated[Path | None, typer.Option("--lock", help="Lock file (default: the repository's requirements.lock).")] = None,
    ) -> None:
        """Write a CycloneDX SBOM of the lock; check it covers every pin and the installed environment matches the lock."""
        from steward.governance.sbom import find_lock, generate_sbom

        report = generate_sbom(lock or find_lock(Path.cwd()), output)
        console().print(f"[green]wrote[/green] {report.path}: {report.components} components, {report.with_hashes} with hashes")
        if not report.ok:
            for m in report.problems:
                console().print(f"[red]✗[/red] {m}")
            raise typer.Exit(1)
