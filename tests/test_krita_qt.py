"""The Krita plug-in takes every Qt name from brushwork.qt, the binding Krita itself runs on.

Importing PyQt5 in Krita 6 fails, and importing PyQt6 in Krita 5 loads Qt 6 into a Qt 5
process, so no other plug-in file (nor the test driver and its scripts) may name a binding.
That the plug-in then works in each Krita is tested in the real editors (tests/krita).
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KRITA_CODE = sorted([*(REPO / "plugin_krita" / "brushwork").rglob("*.py"), *(REPO / "tests" / "krita").rglob("*.py")])
QT_MODULE = REPO / "plugin_krita" / "brushwork" / "qt.py"


def imported_modules(source):
    """Every module ``source`` imports, also in code held in string constants (the screenshot's script)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "import " in node.value:
            try:
                yield from imported_modules(node.value)
            except SyntaxError:
                pass


@pytest.mark.parametrize("path", [p for p in KRITA_CODE if p != QT_MODULE], ids=lambda p: str(p.relative_to(REPO)))
def test_no_krita_file_imports_a_qt_binding_itself(path):
    bindings = [name for name in imported_modules(path.read_text(encoding="utf-8")) if name.split(".")[0] in ("PyQt5", "PyQt6", "PySide6")]
    assert not bindings, f"{path.name} imports {bindings}; import Qt names from brushwork.qt instead"
