"""Level cli beside the API: whole commands (`crictl run`, `ctr run`, `docker run`, the OCI
runtime's own `run`) timed by hyperfine, beside the same pod start through CRI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.controller import hops
from bench.controller.render import Para, Section, Table
from bench.controller.run import Run
from bench.controller.view import View
from bench.ops import POD_START_OPS


def cli_vs_api(samples: pd.DataFrame) -> pd.DataFrame:
    """Starting a pod through each stack's CLI beside the same work through CRI.

    For the cri level the per-lifecycle sum of RunPodSandbox, CreateContainer and
    StartContainer (concurrency 1, warm-up excluded) is what `crictl run` asks for in one
    process; the difference is the CLI's own cost (process start-up, config parsing, its
    extra status calls)."""
    ok = samples[samples["ok"] & ~samples["warmup"] & (samples["concurrency"] == 1)]
    rows = []
    for (stack, handler), g in ok.groupby(["stack", "handler"], sort=True):
        per_life = hops.per_lifecycle_ms(g[g["level"] == "cri"], POD_START_OPS)
        row: dict[str, object] = {"target": f"{stack}/{handler}"}
        row["cri start (ms)"] = float(np.median(per_life)) if len(per_life) else float("nan")
        for op, cg in g[g["level"] == "cli"].groupby("op"):
            row[f"{op} (ms)"] = float((cg["duration_ns"] / 1e6).median())
        if len(row) > 2 or stack == "none":
            rows.append(row)
    return pd.DataFrame(rows)


def applies(run: Run) -> bool:
    return "cli" in run.levels


def cli_sections(run: Run) -> list[Section]:
    samples = run.samples
    return [
        Section(
            "Command line beside the API (p50, ms)",
            [
                Para(
                    "Whole commands timed by hyperfine (process start-up included; the workload runs `exit 0`). "
                    "*cri start* is RunPodSandbox + CreateContainer + StartContainer per lifecycle through CRI at "
                    "concurrency 1, what `crictl run` asks for in one process. *none/…* is the OCI runtime's own "
                    "`run` on a prepared bundle."
                ),
                Table(cli_vs_api(samples)),
            ],
        )
    ]


VIEW = View("cli", cli_sections, applies)
