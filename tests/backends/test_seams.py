"""The seams hold: who may import MLflow, Delta, concrete backends, the factory and other packages' privates.

An AST scan of ``src/steward`` (function-local imports included), so a shortcut anywhere fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import steward

SRC = Path(steward.__file__).parent

STAGES = ("data", "features", "training", "registry", "serving", "monitoring", "loop", "llm", "governance", "tools")


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = rel.parts[:-1] if path.name == "__init__.py" else rel.parts
        yield ".".join(parts), path, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.Module, module: str, is_pkg: bool) -> Iterator[tuple[str, list[str]]]:
    """``(imported module, imported names)`` for every import statement, absolute or relative."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]


def _all_imports() -> Iterator[tuple[str, Path, str, list[str]]]:
    for module, path, tree in _modules():
        for target, names in _imports(tree, module, path.name == "__init__.py"):
            yield module, path, target, names


def test_mlflow_is_imported_only_by_the_mlflow_backend() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, _, target, _ in _all_imports()
        if target.split(".")[0] == "mlflow" and not module.startswith("steward.backends.mlflow_")
    ]
    assert offenders == []


def test_delta_is_read_and_written_only_by_the_lake() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, _, target, _ in _all_imports()
        if target.split(".")[0] == "deltalake" and module != "steward.data.lake"
    ]
    assert offenders == []


def test_stages_import_only_backend_protocols_and_only_the_workspace_opens_backends() -> None:
    offenders = []
    for module, _, target, names in _all_imports():
        if not target.startswith("steward.backends") or target == "steward.backends.base":
            continue
        if module.startswith("steward.backends") or module == "steward.workspace":
            continue
        if module.split(".")[1] in STAGES or target == "steward.backends.factory":
            offenders.append(f"{module} imports {target} {names}")
    assert offenders == []


def _package_of(module: str, is_pkg: bool) -> str:
    return module if is_pkg else module.rpartition(".")[0]


def test_no_module_imports_another_packages_private_modules_or_names() -> None:
    offenders = []
    for module, path, tree in _modules():
        own = _package_of(module, path.name == "__init__.py")
        for target, names in _imports(tree, module, path.name == "__init__.py"):
            if not target.startswith("steward"):
                continue
            parts = target.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
            if private:
                owner = ".".join(parts[: private[0]])  # a private module is its parent package's business
                if not (own == owner or own.startswith(owner + ".")):
                    offenders.append(f"{module} imports private module {target}")
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    owner = _package_of(target, (SRC.parent / Path(*parts) / "__init__.py").exists())
                    if not (own == owner or own.startswith(owner + ".")):
                        offenders.append(f"{module} imports private name {target}.{name}")
    assert offenders == []
