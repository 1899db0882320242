"""`hopbench import critest` on what critest itself writes, and `hopbench compare` on the result.

critest v1.37.0 (built by provisioning) runs -benchmark twice, 8 pod and 8 container samples each,
against nullcri (hopbench's CRI server that answers at once, on its own socket in the test's
folder): what is tested is the import of critest's real output, not a runtime, and nullcri keeps
the test off the stacks, whose pods a concurrent soak or run would otherwise count. The version
comes from the server's own CRI Version call.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench.controller.results import load_run
from bench.node import critest
from bench.node.levels.critest import NULLCRI

from .conftest import run_hopbench

pytestmark = pytest.mark.integration
SAMPLES = 8
IMAGE = "localhost/hopbench/workload:1"


def accepts(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


@pytest.fixture
def nullcri(provisioned, tmp_path):
    """nullcri on a socket of its own; stopped by its PID at the end."""
    sock = tmp_path / "nullcri.sock"
    log = (tmp_path / "nullcri.log").open("wb")
    proc = subprocess.Popen([NULLCRI, "--listen", str(sock), "--image", IMAGE], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 10
    while not accepts(sock) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert accepts(sock), (tmp_path / "nullcri.log").read_text()
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(timeout=10)


def run_critest(endpoint: str, out: Path) -> None:
    """critest -benchmark as a user runs it (the pod and container benchmarks only: no registry here)."""
    out.mkdir(parents=True)
    params = out.parent / f"{out.name}-params.yaml"
    params.write_text(
        f"containersNumber: {SAMPLES}\ncontainersNumberParallel: 1\npodsNumber: {SAMPLES}\npodsNumberParallel: 1\n"
        "containerBenchmarkTimeoutSeconds: 120\npodBenchmarkTimeoutSeconds: 120\n"
    )
    images = out.parent / f"{out.name}-images.yaml"
    images.write_text(f"defaultTestContainerImage: {json.dumps(IMAGE)}\n")
    config = out.parent / f"{out.name}-crictl.yaml"
    config.write_text(f"runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\n")
    argv = [
        critest.find_binary(),
        "-benchmark",
        f"-runtime-endpoint={endpoint}",
        f"-image-endpoint={endpoint}",
        f"-benchmarking-params-file={params}",
        f"-benchmarking-output-dir={out}",
        f"-test-images-file={images}",
        "-ginkgo.skip=from scratch|Image",
        "-ginkgo.no-color",
        f"-config={config}",
    ]
    proc = subprocess.run(argv, cwd=out.parent, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_critest_output_imports_as_a_run_that_compare_accepts(nullcri, tmp_path):
    results = tmp_path / "results"
    runs = []
    for i in range(2):
        out = tmp_path / f"critest{i}"
        run_critest(nullcri, out)
        proc = run_hopbench(
            "import", "critest", str(out), "--stack", "null@0.1.0", "--handler", "runc",
            "--endpoint", nullcri, "--results", str(results),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs.append(Path(proc.stdout.strip()))
    meta, samples = load_run(runs[0])
    assert meta["status"] == "complete" and meta["imported"]["tool"] == "critest"
    assert "(CRI v1" in meta["targets"][0]["versions"]["cri"]  # read from the server's Version call
    per_op = samples.groupby("op").size().to_dict()
    assert per_op == dict.fromkeys(critest.OPS, SAMPLES), per_op
    raw = json.loads((tmp_path / "critest0" / "pod_benchmark_data.json").read_text())
    first = raw["datapoints"][0]["operationsDurationsNs"][0]
    got = samples[(samples["op"] == "RunPodSandbox") & (samples["iteration"] == raw["datapoints"][0]["sampleIndex"])]
    assert int(got["duration_ns"].iloc[0]) == first
    proc = run_hopbench("compare", str(runs[0]), str(runs[1]))
    assert proc.returncode == 0, proc.stderr
    for op in critest.OPS:
        assert op in proc.stdout
    report = run_hopbench("report", str(runs[1]))
    assert report.returncode == 0, report.stderr
    assert "critest-import" in (runs[1] / "report.md").read_text()
