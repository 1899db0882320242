"""The report's views: each registered view implements the protocol, every analysis module's view
is registered, no view reads the run folder itself, and a report reads each file once."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import shutil
from collections import Counter
from pathlib import Path

import pytest

import bench.controller
from bench.controller import report, results
from bench.controller import run as run_module
from bench.controller.run import Run
from bench.controller.view import View

REPO = Path(__file__).resolve().parents[1]
KEPT = REPO / "results" / "kept"
CONTROLLER = REPO / "bench" / "controller"


def test_every_registered_view_implements_the_protocol():
    names = [v.name for v in report.VIEWS]
    assert len(names) == len(set(names)), names
    for view in report.VIEWS:
        assert isinstance(view, View), view
        assert view.name and callable(view.sections) and callable(view.applies), view


def test_every_analysis_modules_view_is_in_the_registry():
    registered = {id(v) for v in report.VIEWS}
    for info in pkgutil.iter_modules(bench.controller.__path__):
        module = importlib.import_module(f"bench.controller.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, View):
                assert id(value) in registered, f"bench.controller.{info.name}.{name} is a view the report never shows"


def test_no_view_module_opens_the_run_folder_itself():
    """Only bench.controller.run reads a run's files (through bench.controller.results)."""
    modules = {v.sections.__module__ for v in report.VIEWS}
    assert modules >= {"bench.controller.hops", "bench.controller.kube", "bench.controller.density"}
    for module in modules:
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "bench.controller.results", f"{module} imports the results folder readers"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("read_text", "read_bytes", "glob", "open"), (
                    f"{module}:{node.lineno} reads files itself ({node.attr}); take them from the Run"
                )


@pytest.mark.parametrize("kept", ["20261127T031500Z-densitykept-local-b32f", "20261127T031519Z-nightlykept-local-70ab"])
def test_a_report_reads_each_file_of_the_run_once(kept, tmp_path, monkeypatch):
    folder = tmp_path / kept
    shutil.copytree(KEPT / kept, folder)
    reads: Counter[str] = Counter()

    def counted(name, real):
        def wrapper(path, *args, **kwargs):
            reads[f"{name} {Path(path).name}"] += 1
            return real(path, *args, **kwargs)

        return wrapper

    for name in ("load_meta", "load_samples", "load_memory", "read_jsonl"):
        monkeypatch.setattr(run_module, name, counted(name, getattr(results, name)))
    run = Run(folder)
    report.build_report(run, adr=True)
    assert reads["load_meta " + kept] == 1 and reads["load_samples " + kept] == 1, reads
    assert max(reads.values()) == 1, reads
    for view in report.VIEWS:
        assert isinstance(view.applies(run), bool), view.name
