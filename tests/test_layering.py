"""The package's imports point one way (docs/ARCHITECTURE.md): each module imports only modules listed before it,
so there is no cycle, and nothing on the user's load path imports the release tooling."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "convtwist_zoo"
# the order of docs/ARCHITECTURE.md's module table
ORDER = ["host", "extras", "cache", "locks", "atomic", "provenance", "run_identity", "run_config", "fused_kernels", "layers",
         "seed_reference", "transforms", "models", "xresnet", "registry", "specs", "hub", "factory", "timm_models", "data", "sync_batchnorm", "evaluate", "training", "leaderboard",
         "seed_robustness", "inference", "folding", "onnx_export", "visualize", "plots", "cli", "release", "__init__",
         "__main__"]


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return "release" if rel.parts[0] == "release" else rel.parts[0]


def _imports(path: Path) -> set[str]:
    """Package modules that ``path`` imports anywhere in it (top level or inside functions)."""
    found = set()
    depth_of_package = len(path.relative_to(PACKAGE).parts) - 1
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level - 1 != depth_of_package:
                continue  # relative to a sub-package (release importing its own modules)
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found  # __init__'s lazy exports are checked by the test below


def test_every_module_is_placed_and_imports_only_modules_before_it():
    modules = {p: _module(p) for p in PACKAGE.rglob("*.py")}
    assert set(modules.values()) <= set(ORDER), set(modules.values()) - set(ORDER)
    wrong = []
    for path, name in modules.items():
        for target in _imports(path) - {name}:
            if ORDER.index(target) >= ORDER.index(name):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {target}")
    assert not wrong, wrong


def test_the_lazy_exports_come_from_modules_above_the_factory():
    import convtwist_zoo
    for name, module in convtwist_zoo._LAZY.items():
        assert ORDER.index(module) > ORDER.index("factory")
        assert getattr(convtwist_zoo, name).__module__ == f"convtwist_zoo.{module}"


def test_convtwist_zoo_train_is_the_function_and_training_its_module():
    import convtwist_zoo
    import convtwist_zoo.training as module
    from convtwist_zoo import TrainConfig, train
    assert train is module.train and convtwist_zoo.train is module.train and TrainConfig is module.TrainConfig


def test_import_convtwist_zoo_loads_none_of_the_extras():
    import subprocess
    import sys
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
