#!/usr/bin/env python3
"""Can this OCI runtime run a container on this node? Try it, and say why not.

Unpacks the workload image's layer into a bundle, writes a minimal OCI spec that runs
`/hopbench-workload exit 0`, and runs `RUNTIME [ARGS] --root TMP run --bundle B ID` with a
deadline. Available means exit status 0 and the workload's ready line on stdout. The
reason otherwise is the runtime's own last error line (e.g. crun 1.8 on hybrid cgroups:
"cgroups in hybrid mode not supported"). Prints one JSON object; always exits 0 unless
its own arguments are wrong. Standard library only: it runs on the node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import uuid

READY = "hopbench-workload ready"


def unpack_rootfs(oci_archive: str, rootfs: str) -> None:
    with tarfile.open(oci_archive) as outer:

        def member(name: str) -> bytes:
            fh = outer.extractfile(name)
            if fh is None:
                raise FileNotFoundError(name)
            return fh.read()

        index = json.loads(member("index.json"))
        manifest = json.loads(member("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        for layer in manifest["layers"]:
            path = "blobs/sha256/" + layer["digest"].split(":")[1]
            with tempfile.TemporaryFile() as tmp:
                tmp.write(member(path))
                tmp.seek(0)
                with tarfile.open(fileobj=tmp) as inner:
                    for m in inner.getmembers():  # our own image, but refuse paths leaving the rootfs
                        if m.name.startswith("/") or ".." in m.name.split("/"):
                            raise ValueError(f"{oci_archive}: layer entry {m.name!r} leaves the rootfs")
                    inner.extractall(rootfs)  # noqa: S202 - checked above; Debian 12's Python lacks filter=


def spec(rootfs: str, args: tuple[str, ...] = ("/hopbench-workload", "exit", "0")) -> dict[str, object]:
    """A minimal OCI spec for the workload: own namespaces, read-only root, no cgroup limits."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": ["PATH=/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "hopbench-probe",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755"],
            },
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runtime", required=True, help="runtime binary")
    p.add_argument("--arg", action="append", default=[], help="extra global argument (repeatable)")
    p.add_argument("--image", required=True, help="OCI archive of the workload image")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)

    result: dict[str, object] = {"runtime": args.runtime, "args": args.arg}
    work = tempfile.mkdtemp(prefix="hopbench-probe-")
    try:
        if not os.access(args.runtime, os.X_OK):
            result.update(available=False, reason=f"{args.runtime} is not an executable file")
        else:
            bundle = os.path.join(work, "bundle")
            rootfs = os.path.join(bundle, "rootfs")
            os.makedirs(rootfs)
            unpack_rootfs(args.image, rootfs)
            with open(os.path.join(bundle, "config.json"), "w") as fh:
                json.dump(spec(rootfs), fh)
            cid = "hopbench-probe-" + uuid.uuid4().hex[:12]
            cmd = [args.runtime, *args.arg, "--root", os.path.join(work, "state"), "run", "--bundle", bundle, cid]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
                err = [line for line in proc.stderr.strip().splitlines() if line.strip()]
                if proc.returncode == 0 and READY in proc.stdout:
                    result.update(available=True, reason="")
                else:
                    last = err[-1] if err else f"no output, exit status {proc.returncode}"
                    result.update(available=False, reason=f"{os.path.basename(args.runtime)} run failed: {last[-400:]}")
            except subprocess.TimeoutExpired:
                result.update(
                    available=False, reason=f"{os.path.basename(args.runtime)} run hung for {args.timeout:.0f} s"
                )
                subprocess.run(
                    [args.runtime, *args.arg, "--root", os.path.join(work, "state"), "delete", "--force", cid],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
