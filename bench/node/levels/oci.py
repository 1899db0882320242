"""The `oci` level: the OCI runtime binary itself, on a bundle prepared from the workload image.

The bottom hop of every stack, entered directly: one lifecycle is `create`, `start`, `kill`
(SIGTERM) and `delete` of the long-running workload, each op timed around one runtime
process. Between ops, untimed: after start the workload's ready line must appear in its
output file; after kill the runtime must report the container stopped. The bundle is shared
by all lifecycles (read-only root), each container has its own id and output file.
These samples belong to no stack (stack "none"): the same binary sits under every stack.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import IO, Any

from bench.errors import ComponentError
from bench.node import ociprobe
from bench.node.levels import READY_MARK, STOP_MARK, Context, Level, Outcome, Target, Timed, Turn, timed, wait_for
from bench.ops import OCI_LIFECYCLE_OPS


class OciFailed(ComponentError):
    pass


class OciLevel(Level):
    """One OCI runtime binary with its own state root under `workdir`."""

    name = "oci"
    ops = OCI_LIFECYCLE_OPS
    per = "handler"

    @classmethod
    def open(cls, target: Target | None, ctx: Context) -> OciLevel:
        if target is None:
            raise OciFailed("level oci runs on a handler")
        h = target.handler
        level = cls(
            h.binary,
            list(h.extra.get("args", [])),
            ctx.workdir / f"oci-{h.name}",
            ctx.job.workload_archive,
            ctx.scen.timeout_s,
        )
        level.target = target
        return level

    def __init__(self, binary: str, args: list[str], workdir: Path, image_archive: str, timeout_s: float) -> None:
        self.binary, self.args, self.timeout = binary, list(args), timeout_s
        self.workdir = workdir
        self.root = workdir / "state"
        self.bundle = workdir / "bundle"
        rootfs = self.bundle / "rootfs"
        rootfs.mkdir(parents=True, exist_ok=True)
        ociprobe.unpack_rootfs(image_archive, str(rootfs))
        spec = ociprobe.spec(str(rootfs), args=("/hopbench-workload",))
        (self.bundle / "config.json").write_text(json.dumps(spec))
        self.live: set[str] = set()
        self.lock = threading.Lock()

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, *self.args, "--root", str(self.root), *args]

    def _call(self, out: IO[bytes], *args: str) -> None:
        # The container inherits runc's stdio at create: a file, never a pipe (a pipe would
        # stay open as long as the container runs and keep the call from returning).
        proc = subprocess.run(
            self._argv(*args), stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=self.timeout, check=False
        )
        if proc.returncode != 0:
            raise OciFailed(f"{Path(self.binary).name} {args[0]} exited {proc.returncode}")

    def state(self, cid: str) -> str:
        proc = subprocess.run(
            self._argv("state", cid), capture_output=True, text=True, timeout=self.timeout, check=False
        )
        return str(json.loads(proc.stdout).get("status", "")) if proc.returncode == 0 else "gone"

    def lifecycle(self, turn: Turn) -> Outcome:
        """Timed ops of one lifecycle and the check failure ('' when the workload behaved)."""
        cid = f"hb-oci-{turn.tag}-{uuid.uuid4().hex[:6]}"
        output = self.workdir / f"{cid}.out"
        results: list[Timed[Any]] = []
        with open(output, "wb") as out:

            def op(name: str, *args: str) -> bool:
                t = timed(name, lambda: self._call(out, *args))
                if t.error:
                    out.flush()
                    tail = output.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                    t = Timed(t.op, t.start_ns, t.duration_ns, None, f"{t.error}: {tail[0][:300]}")
                results.append(t)
                return t.ok

            with self.lock:
                self.live.add(cid)
            try:
                if not (op("create", "create", "--bundle", str(self.bundle), cid) and op("start", "start", cid)):
                    return Outcome(results)
                problem = wait_for(lambda: READY_MARK in output.read_text(errors="replace"), "ready line")
                if not op("kill", "kill", cid, "TERM"):
                    return Outcome(results, problem)
                problem = problem or wait_for(lambda: self.state(cid) == "stopped", "stopped state")
                if STOP_MARK not in output.read_text(errors="replace") and not problem:
                    problem = "the workload did not print its stop line after SIGTERM"
                if op("delete", "delete", cid):
                    with self.lock:
                        self.live.discard(cid)
                return Outcome(results, problem)
            finally:
                output.unlink(missing_ok=True)

    def close(self) -> None:
        errors = self.cleanup()
        if errors:
            self.notes.append(
                f"clean-up of none/{self.target.name if self.target else self.binary}: {'; '.join(errors)}"
            )

    def cleanup(self) -> list[str]:
        """Force-delete what is left, then remove the state root and bundle."""
        errors = []
        with self.lock:
            left = sorted(self.live)
        for cid in left:
            proc = subprocess.run(
                self._argv("delete", "--force", cid), capture_output=True, text=True, timeout=self.timeout, check=False
            )
            if proc.returncode != 0 and self.state(cid) != "gone":
                errors.append(f"delete --force {cid}: {proc.stderr.strip()[-200:]}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        return errors
