"""Imports run one way: application → trainer → library (docs/architecture.md, "Layers").

The library (``backend`` without ``backend.daemon`` and ``backend.cli``) knows nothing of daemons
and trainers; the trainer knows nothing of the daemon or the CLI. This reads every module's
imports (including those inside functions) from its source, so a late import cannot hide.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPLICATION = ("backend.daemon", "backend.cli", "backend.__main__")


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module):
    if module == "trainer" or module.startswith("trainer."):
        return "trainer"
    if any(module == app or module.startswith(app + ".") for app in APPLICATION):
        return "application"
    if module == "backend" or module.startswith("backend."):
        return "library"
    return None


def imported_modules(path):
    """Every module ``path`` imports, as absolute dotted names (``from backend import x`` gives ``backend.x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = sorted(p for folder in ("backend", "trainer") for p in (ROOT / folder).rglob("*.py"))
ALLOWED = {"library": {"library"}, "trainer": {"library", "trainer"},
           "application": {"library", "trainer", "application"}}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path):
    own = layer_of(module_name(path))
    wrong = sorted(name for name in imported_modules(path)
                   if layer_of(name) is not None and layer_of(name) not in ALLOWED[own])
    assert not wrong, f"{module_name(path)} ({own}) imports {wrong}: imports must run application → trainer → library"


def test_the_layers_are_read_correctly():
    """The checker itself: a library module that imported the daemon would be caught."""
    assert layer_of("backend.engine") == "library"
    assert layer_of("backend.daemon.server") == "application"
    assert layer_of("trainer.loop") == "trainer"
    assert any(layer_of(n) == "application" for n in imported_modules(ROOT / "backend" / "cli" / "serve.py"))
