"""The package's imports point one way, in the order docs/ARCHITECTURE.md's table gives (read from the document
itself): each unit (a top-level module or a sub-package) imports only units above it, so research and release code
stay off the user's load path; and no module imports another in a cycle at import time."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "convtwist_zoo"


def architecture_order() -> list[str]:
    """The units of docs/ARCHITECTURE.md's import-order table, top to bottom (``errors``, ``files``, ...)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = text.split("<!-- import order:", 1)[1].split("\n\n", 1)[0]
    return [re.sub(r"\.py$|/$", "", m) for m in re.findall(r"^\| `([\w/.]+)` \|", table, re.M)]


ORDER = architecture_order()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    return module.split(".")[0] if module else "__init__"


def _imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Package modules ``path`` imports (dotted, relative to the package), anywhere in it or at its top level."""
    found = set()
    here = _module_name(path).split(".") if _module_name(path) else []
    package = here if path.name == "__init__.py" else here[:-1]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            if node.module:
                found.add(".".join(target))
            else:
                found.update(".".join(target + [a.name]) for a in node.names)
    return found


def test_the_order_comes_from_the_document_and_places_every_unit():
    assert ORDER[:2] == ["errors", "extras"] and ORDER.index("models") < ORDER.index("research") < ORDER.index("cli")
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units <= set(ORDER), f"units missing from docs/ARCHITECTURE.md's table: {units - set(ORDER)}"


def test_every_unit_imports_only_units_above_it():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(_module_name(path))
        for target in _imports(path):
            other = _unit(target)
            if other != unit and ORDER.index(other) >= ORDER.index(unit):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not wrong, wrong


def test_no_module_imports_another_in_a_cycle_at_import_time():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        modules = set()
        for target in _imports(path, top_level_only=True):  # "from . import x" may name a module or an attribute
            modules.add(target if (PACKAGE / (target.replace(".", "/") + ".py")).exists()
                        or (PACKAGE / target.replace(".", "/")).is_dir() else target.rpartition(".")[0])
        graph[name] = {m for m in modules if m != name}
    seen, stack, cycles = set(), [], []

    def visit(node):
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in graph.get(node, ()):
            # a package's __init__ importing its own modules is how a package is built, not a cycle
            if not nxt.startswith(node + ".") and not (node == "" and nxt):
                visit(nxt)
        stack.pop()
    for node in graph:
        visit(node)
    assert not cycles, cycles


def test_the_lazy_exports_come_from_modules_above_the_models():
    import convtwist_zoo
    for name, module in convtwist_zoo._LAZY.items():
        assert ORDER.index(_unit(module)) > ORDER.index("models")
        assert getattr(convtwist_zoo, name).__module__ == f"convtwist_zoo.{module}"


def test_convtwist_zoo_train_is_the_function_and_training_its_package():
    import convtwist_zoo
    import convtwist_zoo.training as package
    from convtwist_zoo import TrainConfig, train
    assert train is package.train and convtwist_zoo.train is package.train and TrainConfig is package.TrainConfig


def test_import_convtwist_zoo_loads_none_of_the_extras():
    import subprocess
    code = ("import sys, convtwist_zoo; print(sorted(m for m in ('torchcodec', 'onnx', 'onnxruntime', 'matplotlib', "
            "'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_missing_extra_is_named_with_the_command_that_installs_it(monkeypatch, capsys):
    import pytest

    from convtwist_zoo.cli import main
    from convtwist_zoo.extras import MissingExtraError, require
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an install without the [export] extra sees
    with pytest.raises(MissingExtraError, match=r"onnx is not installed; this needs the \[export\] extra: "
                                                r"pip install 'convtwist-zoo\[export\]'"):
        require("onnx")
    assert main(["export", "resnet18", "-o", "/tmp/never.onnx"]) == 2  # the CLI: one line, no traceback
    err = capsys.readouterr().err
    assert "pip install 'convtwist-zoo[export]'" in err and "Traceback" not in err
