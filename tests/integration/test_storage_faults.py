"""The results folder fails mid-run, for real: a small tmpfs fills up (ENOSPC), an ext4 file system
on a loop device turns read-only (EROFS, through ext4's own error path). The run ends with a clear
error, the agent removes its pods, the journals keep every line written before, and where the
folder takes writes again (freed, or copied off the broken disk) `hopbench report` rebuilds the
tables and the report."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.controller.results import load_run

from .conftest import no_pods_left, run_hopbench, run_until

pytestmark = pytest.mark.integration

SCENARIO = (
    "schema: 1\nname: {name}\ntargets: [containerd/runc]\nlevels: [cri]\niterations: 60\nwarmup: 0\n"
    "concurrency: [1]\ncontrol: false\n"
)


def sh(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"{' '.join(argv)} failed here ({proc.stderr.strip()[:300]}): this storage fault cannot be made")


@contextlib.contextmanager
def mounted(argv: list[str], where: Path) -> Iterator[Path]:
    where.mkdir()
    sh(*argv, str(where))
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def break_mid_run(tmp_path: Path, root: Path, name: str, act: Callable[[], None]) -> tuple[int, str, Path, int]:
    """Run a scenario into `root`, `act` once ten samples are in: (status, stderr, run folder,
    journal lines at that moment)."""
    scen = tmp_path / f"{name}.yaml"
    scen.write_text(SCENARIO.format(name=name))
    results = root / "results"
    seen = [0]

    def ready(text: str) -> bool:
        seen[0] = text.count("\n")
        return seen[0] >= 10

    rc, err, run = run_until(
        ["run", "--scenario", str(scen), "--results", str(results)],
        results,
        "samples.jsonl",
        ready,
        lambda _: act(),
        name,
    )
    return rc, err, run, seen[0]


def assert_stopped_cleanly(rc: int, err: str, run: Path, lines_before: int, why: str) -> None:
    assert rc == 1, err[-3000:]
    said = " ".join(err.split())  # the console wraps long lines
    assert f"cannot write ({why})" in said and "every sample written before is kept" in said, err[-3000:]
    assert "hopbench report" in said and "run failed" in said  # says how to rebuild, and the outcome
    assert "Traceback" not in err
    journal = (run / "samples.jsonl").read_text()
    assert journal.count("\n") >= lines_before  # nothing written before was lost
    no_pods_left(run.name)


def rebuild(run: Path) -> None:
    proc = run_hopbench("report", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "report.html").exists() and (run / "samples.parquet").exists()
    _, samples = load_run(run)
    complete_lines = sum(1 for line in (run / "samples.jsonl").read_text().splitlines() if line.endswith("}"))
    assert len(samples) == complete_lines >= 10


def test_a_results_folder_that_fills_up(provisioned, tmp_path):
    with mounted(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs"], tmp_path / "small") as root:
        filler = root / "filler"

        def fill() -> None:  # what a neighbour's log does to a shared disk
            with open(filler, "wb") as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()

        rc, err, run, before = break_mid_run(tmp_path, root, "enospc", fill)
        assert_stopped_cleanly(rc, err, run, before, "No space left on device")
        filler.unlink()  # the disk is freed
        rebuild(run)


def test_a_results_folder_that_turns_read_only(provisioned, tmp_path):
    image = tmp_path / "ext4.img"
    sh("truncate", "-s", "64M", str(image))
    sh("mkfs.ext4", "-q", "-F", str(image))
    with mounted(["mount", "-o", "loop,errors=remount-ro", str(image)], tmp_path / "disk") as root:
        device = Path(
            subprocess.run(["findmnt", "-no", "SOURCE", str(root)], capture_output=True, text=True).stdout.strip()
        )
        trigger = Path("/sys/fs/ext4") / device.name / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip(f"{trigger} missing: this kernel cannot turn an ext4 file system read-only on demand")
        rc, err, run, before = break_mid_run(tmp_path, root, "erofs", lambda: trigger.write_text("hopbench test\n"))
        assert_stopped_cleanly(rc, err, run, before, "Read-only file system")
        # What an operator does with a disk that turned read-only: copy the run off it. The
        # journals read back whole (the page cache holds what ext4 had not yet committed), and
        # the report is rebuilt from them where writes work.
        copy = tmp_path / "copied" / run.name
        shutil.copytree(run, copy)
    rebuild(copy)
