"""The zoo's own exceptions share `ZooError`; the CLI turns those and `OSError` into one line and exit status 2,
and anything else (a bug) keeps its traceback instead of reading as the user's mistake."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import convtwist_zoo
from convtwist_zoo import cli, commands
from convtwist_zoo.errors import InputError, ZooError


def test_every_error_class_the_zoo_defines_is_a_zoo_error():
    errors = {}
    for info in pkgutil.walk_packages(convtwist_zoo.__path__, "convtwist_zoo."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == info.name and issubclass(obj, Exception):
                errors[f"{info.name}.{name}"] = obj
    assert len(errors) >= 12, sorted(errors)
    assert [name for name, cls in errors.items() if not issubclass(cls, ZooError)] == []


def _raising(exc):
    def command(args):
        raise exc
    return command


@pytest.mark.parametrize("exc, line", [(InputError("--lr must be > 0; give a positive rate"),
                                        "convtwist-zoo list: error: --lr must be > 0; give a positive rate"),
                                       (FileNotFoundError("no results file r.jsonl"),
                                        "convtwist-zoo list: error: no results file r.jsonl")])
def test_the_zoos_errors_and_the_systems_are_one_line_and_exit_2(exc, line, monkeypatch, capsys):
    monkeypatch.setattr(commands, "_cmd_list", _raising(exc))
    assert cli.main(["list"]) == 2
    assert capsys.readouterr().err.strip() == line


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), RuntimeError("shape mismatch"),
                                 ValueError("math domain error"), KeyError("top1")])
def test_a_bug_is_not_reported_as_bad_input(bug, monkeypatch, capsys):
    monkeypatch.setattr(commands, "_cmd_list", _raising(bug))
    with pytest.raises(type(bug)):
        cli.main(["list"])
    assert "error:" not in capsys.readouterr().err
