"""docs/architecture.md stays true: every `path.py:Name.name` it cites exists in that file.

The newcomer's walk names, in order, every function a stylize request's pixels pass through;
this test reads those references (and any others in the document) from the source with ``ast``.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
REFERENCE = re.compile(r"`([\w/]+\.py):([\w.]+)`")


def defined_names(path):
    """Qualified names of the classes and functions defined in ``path`` (``Class.method``, ``function``)."""
    names = set()

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                names.add(name)
                visit(child, name + ".")
            elif isinstance(child, (ast.Assign, ast.AnnAssign)) and not prefix:
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return names


def test_every_cited_function_exists():
    references = REFERENCE.findall(DOC.read_text())
    assert len(references) >= 20, "the walk should cite the functions the pixels pass through"
    missing = [f"{path}:{name}" for path, name in references
               if not (ROOT / path).is_file() or name not in defined_names(ROOT / path)]
    assert not missing, f"docs/architecture.md cites names that do not exist: {missing}"


def test_the_walk_follows_a_krita_stylize_from_the_docker_to_the_net_and_back():
    walk = DOC.read_text().split("## A stylize request from Krita", 1)[1].split("\n## ", 1)[0]
    files = [path for path, _ in REFERENCE.findall(walk)]
    for layer in ("plugin_krita/", "backend/client.py", "backend/daemon/", "backend/engine.py", "backend/nets.py"):
        assert any(f.startswith(layer) for f in files), f"the walk skips {layer}"
    assert files[0].startswith("plugin_krita/") and files[-1].startswith("plugin_krita/"), \
        "the walk starts in the docker and ends with the new layer in Krita"
