"""Differential hop cost: the same logical work entered at the CRI and at the OCI runtime.

For a stack and a CRI op, the OCI runtime ops that op contains are named explicitly
(MAPPING, from how each stack drives its runtime). The hop cost is the difference between
the CRI op's latency and the contained runtime ops' latency, both per lifecycle:

    hop(stack, op) = median(CRI op) - median(sum of the mapped oci ops in one oci lifecycle)

It is what the layers above the runtime add (CRI server, engine, containerd, shim, network
set-up for sandboxes), measured side by side in one run. The confidence interval comes
from a percentile bootstrap: both sample sets are resampled independently (they come from
independent lifecycles), the difference of medians recomputed each time, and the
(1 - confidence) / 2 tails cut. Only measured (not warm-up), successful, complete
lifecycles at concurrency 1 enter.

Mapping, per stack (the runtime call happens inside the named CRI op):
  containerd  StartContainer: create + start (CreateContainer only records the container);
              StopContainer: kill. The runtime's delete runs when containerd reaps the exited
              task, outside any CRI op, so no op maps to delete.
  docker      the same through dockerd: StartContainer: create + start; StopContainer: kill.
  crio        CreateContainer: create (CRI-O runs the runtime's create there);
              StartContainer: start; StopContainer: kill; RemoveContainer: delete.
StopContainer returns once the process has exited; the runtime's `kill` returns once the
signal is sent. The wait for the exit is therefore part of StopContainer's hop cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAPPING: dict[str, dict[str, tuple[str, ...]]] = {
    "containerd": {"StartContainer": ("create", "start"), "StopContainer": ("kill",)},
    "docker": {"StartContainer": ("create", "start"), "StopContainer": ("kill",)},
    "crio": {
        "CreateContainer": ("create",),
        "StartContainer": ("start",),
        "StopContainer": ("kill",),
        "RemoveContainer": ("delete",),
    },
}


def per_lifecycle_ms(samples: pd.DataFrame, ops: tuple[str, ...]) -> np.ndarray:
    """Sum of `ops` in each complete, measured, successful lifecycle at concurrency 1, in ms."""
    s = samples[samples["op"].isin(ops) & samples["ok"] & ~samples["warmup"] & (samples["concurrency"] == 1)]
    per = s.groupby("iteration")["duration_ns"].agg(["sum", "count"])
    values: np.ndarray = (per[per["count"] == len(ops)]["sum"] / 1e6).to_numpy(dtype=float)
    return values


def bootstrap_median_diff(
    a: np.ndarray, b: np.ndarray, confidence: float = 0.95, rounds: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """median(a) - median(b) with a percentile-bootstrap confidence interval."""
    rng = np.random.default_rng(seed)
    ra = np.median(rng.choice(a, size=(rounds, len(a)), replace=True), axis=1)
    rb = np.median(rng.choice(b, size=(rounds, len(b)), replace=True), axis=1)
    diffs = ra - rb
    tail = (1 - confidence) / 2 * 100
    return (
        float(np.median(a) - np.median(b)),
        float(np.percentile(diffs, tail)),
        float(np.percentile(diffs, 100 - tail)),
    )


def differential(samples: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per stack/handler/CRI op that has both cri samples and oci samples of its runtime."""
    rows = []
    cri = samples[samples["level"] == "cri"]
    oci = samples[samples["level"] == "oci"]
    for (stack, handler), g in cri.groupby(["stack", "handler"], sort=True):
        runtime = oci[oci["handler"] == handler]
        for op, oci_ops in MAPPING.get(str(stack), {}).items():
            a = per_lifecycle_ms(g, (op,))
            b = per_lifecycle_ms(runtime, oci_ops)
            if len(a) < 2 or len(b) < 2:
                continue
            hop, lo, hi = bootstrap_median_diff(a, b, confidence)
            rows.append(
                {
                    "target": f"{stack}/{handler}",
                    "cri op": op,
                    "oci ops": " + ".join(oci_ops),
                    "cri p50 (ms)": float(np.median(a)),
                    "oci p50 (ms)": float(np.median(b)),
                    "hop cost (ms)": hop,
                    "CI low": lo,
                    "CI high": hi,
                    "n cri": len(a),
                    "n oci": len(b),
                }
            )
    return pd.DataFrame(rows)
