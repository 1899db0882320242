#!/usr/bin/env python3
"""Install one pinned Go toolchain under the build cache, the way GOTOOLCHAIN fetches one.

A Debian 12 node has no usable Go (its golang-go is 1.19, too old for every component hopbench
builds), and a toolchain that merely happens to be on a machine is not a provisioning step. The
Go module proxy serves every released toolchain as the module `golang.org/toolchain`, version
`v0.0.1-go<version>.<os>-<arch>`: a zip whose files sit under
`golang.org/toolchain@<module version>/` and carry their modes. This downloads that zip (or takes
a copy a lab keeps offline), checks its sha256 against the one pinned in the repository, and
unpacks it to `<cache>/toolchains/go<version>.<os>-<arch>/`, atomically: a toolchain folder
exists only once it is whole, and a marker inside it records the zip's sha256, so a second run
(or a second clone) finds it and does nothing.

Or, with --existing, checks that a toolchain already on the node is the pinned version and
uses it as it is.

Prints one JSON object: changed (installed now), go (the go binary), goroot, version.
Standard library only: it runs on the node.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile

MARKER = ".hopbench-toolchain-sha256"


def module_version(version: str, goos: str, goarch: str) -> str:
    """The golang.org/toolchain module version of one Go release: v0.0.1-go1.26.8.linux-amd64."""
    return f"v0.0.1-go{version}.{goos}-{goarch}"


def zip_url(proxy: str, version: str, goos: str, goarch: str) -> str:
    """Where a GOPROXY-protocol proxy serves the toolchain's zip. `proxy` is one GOPROXY entry."""
    return f"{proxy.rstrip('/')}/golang.org/toolchain/@v/{module_version(version, goos, goarch)}.zip"


def first_proxy(goproxy: str) -> str:
    """The first proxy URL of a GOPROXY list (comma or pipe separated); 'direct' and 'off'
    are not proxies: a toolchain is only ever served by a proxy."""
    for entry in goproxy.replace("|", ",").split(","):
        entry = entry.strip()
        if entry and entry not in ("direct", "off"):
            return entry
    raise SystemExit(f"GOPROXY {goproxy!r} names no proxy: give a proxy URL, --zip or --existing")


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(zip_path: str, dest: str, prefix: str) -> None:
    """Unpack the files under `prefix` into `dest`, keeping their modes; refuse any entry that
    would land outside `dest`."""
    root = os.path.realpath(dest)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix):
                raise SystemExit(f"{zip_path}: entry {info.filename!r} is not under {prefix!r}")
            rel = info.filename[len(prefix) :]
            if not rel:
                continue
            target = os.path.realpath(os.path.join(dest, rel))
            if target != root and not target.startswith(root + os.sep):
                raise SystemExit(f"{zip_path}: entry {info.filename!r} leaves the toolchain folder")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)


def go_version_of(go: str) -> str:
    """'1.26.8' from `go env GOVERSION` (go1.26.8), or '' when it does not run."""
    try:
        out = subprocess.run(
            [go, "env", "GOVERSION"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "GOTOOLCHAIN": "local"},
            timeout=60,
        )
    except OSError:
        return ""
    return out.stdout.strip().removeprefix("go") if out.returncode == 0 else ""


@contextlib.contextmanager
def cache_lock(cache_dir: str, name: str):
    """Hold <cache_dir>/locks/<name>.lock: several nodes provisioned at once (Ansible forks, the
    builds delegated to the controller) wait for one download or build instead of repeating it."""
    locks = os.path.join(cache_dir, "locks")
    os.makedirs(locks, exist_ok=True)
    with open(os.path.join(locks, name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--version", required=True, help="the Go release, e.g. 1.26.8")
    p.add_argument("--sha256", default="", help="sha256 of the toolchain zip (required unless --existing)")
    p.add_argument("--goos", default="linux")
    p.add_argument("--goarch", required=True, help="amd64, arm64, ...")
    p.add_argument("--cache-dir", default="/var/cache/hopbench")
    p.add_argument("--goproxy", default="https://proxy.golang.org", help="a GOPROXY list; its first proxy is used")
    p.add_argument("--zip", default="", help="a copy of the toolchain zip on this node, instead of the proxy")
    p.add_argument("--existing", default="", help="a go binary already on the node, used if it is the pinned version")
    args = p.parse_args(argv)

    if args.existing:
        found = go_version_of(args.existing)
        if found != args.version:
            what = f"is Go {found}" if found else "does not run"
            sys.stderr.write(f"gobuild_go_existing {args.existing} {what}; the pinned toolchain is Go {args.version}\n")
            return 1
        goroot = os.path.dirname(os.path.dirname(os.path.realpath(args.existing)))
        print(json.dumps({"changed": False, "go": args.existing, "goroot": goroot, "version": args.version}))
        return 0

    if len(args.sha256) != 64:
        p.error("--sha256 must be the zip's 64 hex digits")
    name = f"go{args.version}.{args.goos}-{args.goarch}"
    with cache_lock(args.cache_dir, f"toolchain-{name}"):
        return install(args, name)


def install(args: argparse.Namespace, name: str) -> int:
    base = os.path.join(args.cache_dir, "toolchains")
    goroot = os.path.join(base, name)
    go = os.path.join(goroot, "bin", "go")
    marker = os.path.join(goroot, MARKER)
    if os.path.exists(marker):
        with open(marker) as fh:
            recorded = fh.read().strip()
        if recorded == args.sha256 and os.access(go, os.X_OK):
            print(json.dumps({"changed": False, "go": go, "goroot": goroot, "version": args.version}))
            return 0
    os.makedirs(base, exist_ok=True)
    downloads = os.path.join(args.cache_dir, "downloads")
    os.makedirs(downloads, exist_ok=True)
    zip_path = args.zip or os.path.join(downloads, f"{module_version(args.version, args.goos, args.goarch)}.zip")
    if not args.zip and not (os.path.exists(zip_path) and sha256_of(zip_path) == args.sha256):
        url = zip_url(first_proxy(args.goproxy), args.version, args.goos, args.goarch)
        if not url.startswith(("https://", "http://")):
            sys.stderr.write(f"gobuild_goproxy: {url} is not an http(s) URL\n")
            return 1
        partial = zip_path + ".part"
        try:
            # The scheme is checked above; the zip is checked against the pinned sha256 below.
            with urllib.request.urlopen(url, timeout=120) as resp, open(partial, "wb") as out:  # noqa: S310
                shutil.copyfileobj(resp, out, 1 << 20)
        except OSError as err:
            sys.stderr.write(
                f"downloading {url}: {err}; a lab without the proxy sets gobuild_go_zip_file or gobuild_go_existing\n"
            )
            return 1
        os.replace(partial, zip_path)
    got = sha256_of(zip_path)
    if got != args.sha256:
        sys.stderr.write(f"{zip_path} has sha256 {got}, expected gobuild_go_sha256 {args.sha256} (Go {args.version})\n")
        return 1

    work = tempfile.mkdtemp(prefix=f".{name}-", dir=base)
    try:
        unpack(zip_path, work, f"golang.org/toolchain@{module_version(args.version, args.goos, args.goarch)}/")
        with open(os.path.join(work, MARKER), "w") as fh:
            fh.write(args.sha256 + "\n")
        found = go_version_of(os.path.join(work, "bin", "go"))
        if found != args.version:
            sys.stderr.write(f"the unpacked toolchain says Go {found or '(does not run)'}, expected {args.version}\n")
            return 1
        if os.path.exists(goroot):
            shutil.rmtree(goroot)  # an incomplete or different copy: the marker did not match
        os.replace(work, goroot)
    finally:
        if os.path.exists(work):
            shutil.rmtree(work)
    print(json.dumps({"changed": True, "go": go, "goroot": goroot, "version": args.version}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
