"""Every notebook runs top to bottom on the kept result sets; outputs are stripped in git."""

import shutil
from pathlib import Path

import nbformat
import papermill
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_the_four_notebooks():
    assert [p.stem for p in NOTEBOOKS] == ["hop_breakdown", "memory_density", "nightly_trends", "stacks_comparison"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert any("parameters" in c.metadata.get("tags", []) for c in code)


def execute(path: Path, out: Path, parameters: dict[str, str]) -> nbformat.NotebookNode:
    """The notebook run top to bottom with papermill; it must raise no error in any cell."""
    papermill.execute_notebook(
        str(path), str(out), parameters=parameters, kernel_name="python3", cwd=str(REPO), progress_bar=False
    )
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_kept_results(path, tmp_path):
    kept = tmp_path / "kept"
    shutil.copytree(REPO / "results" / "kept", kept)  # the notebooks write parquet files next to the journals
    nb = execute(path, tmp_path / path.name, {"results_dir": str(kept)})
    assert any(o.get("data", {}).get("image/png") for c in nb.cells for o in getattr(c, "outputs", []))


def test_an_imported_critest_run_shows_in_the_comparison_notebook(tmp_path):
    """`hopbench import critest` output is a run like any other: the comparison notebook reads it."""
    from bench.controller.importer import import_critest

    results = tmp_path / "results"
    run = import_critest(REPO / "tests" / "data" / "critest", results, "containerd@2.4.2", "runc")
    params = {"results_dir": str(results), "run_id": run.name, "level": "critest", "reference": "none"}
    nb = execute(REPO / "notebooks" / "stacks_comparison.ipynb", tmp_path / "out.ipynb", params)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "critest-import" in text and "RunPodSandbox" in text
