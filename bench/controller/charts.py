"""Chart plumbing shared by every view: the headless backend, PNG encoding, target colours, axes.

Each analysis draws its own charts beside its computation (hops draws the split, sweep the
saturation curves, ...); this module holds only what they all share.

One colour per target, the same in every chart of every report.

A target's colour comes from its stack kind and OCI runtime (containerd/runc is always the same
blue), never from its position in a run: a reader who learnt the colours on one report reads the
next one at a glance. Older instances of one kind (containerd@1.6.20 beside containerd@2.4.2)
get lighter tints of the kind's colour, newest darkest. A pair outside the table gets a colour
from a second palette chosen by a stable hash of its name.
"""

from __future__ import annotations

import base64
import io
import zlib
from collections.abc import Iterable
from typing import Any

# No backend is chosen here: a notebook that imports an analysis keeps its inline backend; the
# report (bench.controller.report) chooses the headless one.
import matplotlib.pyplot as plt
import matplotlib.ticker as ticker

from bench.stacks import kind_of, version_key, version_of

__all__ = ["KNOWN", "plain_log_ticks", "plt", "png", "target_colours", "ticker"]


def png(fig: Any) -> str:
    """The figure as a data: URL (the report is one self-contained file), and the figure closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plain_log_ticks(axis: Any) -> None:
    """Log-scale ticks written as plain numbers (2, 5, 10, 20 ms), no minor labels."""
    axis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axis.set_minor_formatter(ticker.NullFormatter())


# Kind and handler -> colour (hue per kind: containerd blue, CRI-O green, Docker orange, the bare
# runtime grey; shade per handler).
KNOWN = {
    ("containerd", "runc"): "#1f4e9c",
    ("containerd", "crun"): "#4a90d9",
    ("containerd", "runsc"): "#7a5cc4",
    ("containerd", "kata"): "#2aa7b8",
    ("crio", "runc"): "#1b7f3b",
    ("crio", "crun"): "#5bb56a",
    ("crio", "runsc"): "#6d8f1f",
    ("crio", "kata"): "#2e9c8a",
    ("docker", "runc"): "#d9660b",
    ("docker", "crun"): "#f0a13a",
    ("docker", "runsc"): "#c23b22",
    ("docker", "kata"): "#b5651d",
    ("none", "runc"): "#555555",
    ("none", "crun"): "#888888",
    ("none", "control"): "#aaaaaa",
}
OTHERS = ("#8c564b", "#e377c2", "#bcbd22", "#17becf", "#9467bd", "#7f7f7f", "#a6761d", "#666600")


def _tint(colour: str, share: float) -> str:
    """`colour` mixed with white: share 0 is the colour, 1 is white."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * share):02x}" for c in rgb)


def split_target(target: str) -> tuple[str, str, str]:
    """'[node ]stack/handler' -> (node, stack, handler)."""
    node, _, rest = target.rpartition(" ")
    stack, _, handler = rest.partition("/")
    return node, stack, handler


def base_colour(stack: str, handler: str) -> str:
    key = (kind_of(stack), handler)
    if key in KNOWN:
        return KNOWN[key]
    return OTHERS[zlib.crc32(f"{key[0]}/{handler}".encode()) % len(OTHERS)]


def target_colours(targets: Iterable[str]) -> dict[str, str]:
    """Colour of each target ('[node ]stack/handler', stack possibly 'kind@version')."""
    names = sorted(set(targets))
    parts = {t: split_target(t) for t in names}
    # Versions of each kind and handler, newest first: rank 0 keeps the colour, older get lighter.
    versions: dict[tuple[str, str], list[str]] = {}
    for _node, stack, handler in parts.values():
        versions.setdefault((kind_of(stack), handler), [])
        if version_of(stack) not in versions[(kind_of(stack), handler)]:
            versions[(kind_of(stack), handler)].append(version_of(stack))
    for vs in versions.values():
        vs.sort(key=lambda v: (version_key(v), v), reverse=True)
    out = {}
    for target, (_node, stack, handler) in parts.items():
        rank = versions[(kind_of(stack), handler)].index(version_of(stack))
        out[target] = _tint(base_colour(stack, handler), min(0.6, 0.3 * rank))
    return out
