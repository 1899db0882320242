#!/usr/bin/env python3
"""Build a Go program from its module on the Go module proxy, cached by version.

Some components (cri-dockerd, crictl...) have no Debian package. This builds one from
its Go module with the pinned Go toolchain the gobuild role installed (go_toolchain.py,
given by absolute path: never a `go` found on PATH) and keeps the binary in a cache keyed by
module, version, build settings and Go release, so a second run (or a second clone) skips the
build.

A module whose go.mod has replace directives cannot be built by `go install
module@version`. So the build happens in a throwaway main module of ours that requires
the target module and repeats its replace lines; `go build` then builds the target's
package from the module cache. A replacement by a relative path points into the target's
own tree, which its module zip does not hold; k8s.io/kubernetes replaces each of its staging
modules (k8s.io/api, k8s.io/kubelet, ...) so, and with --staging-version those become the
published releases of the same staging modules (v0.36.3 for kubernetes v1.36.3).

Prints one JSON object: changed (built now), path (the cached binary), version.
Standard library only: it runs on the node.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

# go_toolchain.py lies beside this file, on the node as in the repository.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from go_toolchain import cache_lock, go_version_of  # noqa: E402


def replaces(gomod: str, staging_version: str = "", staging_prefix: str = "") -> list[str]:
    """The replace directives of a go.mod, one 'old [v] => new [v]' string each. A relative one
    becomes `old => old staging_version` when a staging version is given and old starts with
    `staging_prefix`; the others are left out (etcd also replaces modules it forbids by paths
    that do not exist)."""
    found: list[str] = []
    block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if block:
            if line == ")":
                block = False
            elif "=>" in line:
                found.append(line)
        elif re.match(r"^replace\s*\($", line):
            block = True
        elif line.startswith("replace ") and "=>" in line:
            found.append(line[len("replace ") :].strip())
    out = []
    for r in found:
        old, new = (s.strip() for s in r.split("=>", 1))
        if not new.startswith("."):
            out.append(r)
        elif staging_version and old.startswith(staging_prefix):
            out.append(f"{old.split()[0]} => {old.split()[0]} {staging_version}")
    return out


def go_directive(gomod: str) -> str:
    m = re.search(r"^go\s+(\S+)", gomod, re.M)
    return m.group(1) if m else "1.21"


def toolchain_version(go: str) -> str:
    """The Go release of the toolchain binary `go` (go1.26.8), which must be an absolute path."""
    if not os.path.isabs(go):
        raise SystemExit(f"--go {go!r}: give the toolchain's go binary by absolute path, not a name looked up on PATH")
    version = go_version_of(go)
    if not version:
        raise SystemExit(f"{go} env GOVERSION failed: the toolchain does not run")
    return "go" + version


def run(argv: list[str], cwd: str, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # `go mod download -json` reports its error in the JSON on stdout, not on stderr.
        detail = proc.stderr.strip() or proc.stdout.strip()
        sys.stderr.write(f"{' '.join(argv)} failed ({proc.returncode}): {detail[-4000:]}\n")
        raise SystemExit(1)
    return proc.stdout


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--module", default="", help="the Go module to build from the proxy (or --source)")
    p.add_argument("--version", required=True)
    p.add_argument(
        "--source",
        default="",
        help="a directory holding a main module of our own (go.mod, go.sum, *.go) to build instead of --module; "
        "the cache key includes its files' sha256",
    )
    p.add_argument("--package", required=True, help="package path of the main package to build")
    p.add_argument("--name", required=True, help="binary name")
    p.add_argument("--cache-dir", default="/var/cache/hopbench")
    p.add_argument("--go", required=True, help="the go binary of the pinned toolchain (gobuild role)")
    p.add_argument("--goproxy", default="https://proxy.golang.org,direct")
    p.add_argument("--tags", default="")
    p.add_argument("--ldflags", default="-s -w")
    p.add_argument(
        "--staging-version",
        default="",
        help="version of the published modules that replace the target's relative (staging) replacements",
    )
    p.add_argument("--staging-prefix", default="", help="only relative replacements of modules with this prefix")
    p.add_argument("--cgo", choices=["0", "1"], default="0")
    p.add_argument(
        "--test-binary",
        choices=["0", "1"],
        default="0",
        help="build the package's test binary (go test -c), e.g. critest, which cri-tools ships as a test",
    )
    args = p.parse_args(argv)

    if bool(args.module) == bool(args.source):
        p.error("give exactly one of --module and --source")
    source_sum = _tree_sha256(args.source) if args.source else ""
    # The toolchain first: no lookup on PATH, and a binary built by another Go is not reused.
    go_version = toolchain_version(args.go)
    fields = [args.module or f"source:{source_sum}", args.version, args.package, args.tags, args.ldflags, args.cgo]
    fields.append(f"go={go_version}")
    if args.staging_version:
        fields.append(f"staging={args.staging_prefix}{args.staging_version}")
    test_binary = args.test_binary == "1"
    settings = json.dumps([*fields, "test"] if test_binary else fields)
    key = hashlib.sha256(settings.encode()).hexdigest()[:12]
    bin_dir = os.path.join(args.cache_dir, "bin")
    target = os.path.join(bin_dir, f"{args.name}-{args.version}-{key}")
    with cache_lock(args.cache_dir, os.path.basename(target)):
        return build(args, target, go_version, test_binary)


def build(args: argparse.Namespace, target: str, go_version: str, test_binary: bool) -> int:
    bin_dir = os.path.dirname(target)
    if os.access(target, os.X_OK):
        print(json.dumps({"changed": False, "path": target, "version": args.version, "go": go_version}))
        return 0

    os.makedirs(bin_dir, exist_ok=True)
    # Nothing of the node's own Go setup leaks in: GOROOT follows the toolchain's own binary,
    # and GOTOOLCHAIN=local makes a module that needs a newer Go fail with that message instead
    # of fetching another toolchain behind the pin.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("GO") and k != "CGO_ENABLED"}
    env = {
        **inherited,
        "GOMODCACHE": os.path.join(args.cache_dir, "go", "mod"),
        "GOCACHE": os.path.join(args.cache_dir, "go", "build"),
        "GOPATH": os.path.join(args.cache_dir, "go", "path"),
        "GOFLAGS": "-mod=mod -buildvcs=false",
        "CGO_ENABLED": args.cgo,
        "GOTOOLCHAIN": "local",
        "GOPROXY": args.goproxy,
    }
    with tempfile.TemporaryDirectory(prefix=f"hopbench-build-{args.name}-") as work:
        if args.source:
            shutil.copytree(args.source, work, dirs_exist_ok=True)
            cmd = [args.go, "build", "-trimpath", "-ldflags", args.ldflags, "-o", target + ".tmp", args.package]
            run(cmd, work, env)
            os.replace(target + ".tmp", target)
            print(json.dumps({"changed": True, "path": target, "version": args.version, "go": go_version}))
            return 0
        info = json.loads(run([args.go, "mod", "download", "-json", f"{args.module}@{args.version}"], work, env))
        if info.get("Error"):
            sys.stderr.write(f"go mod download {args.module}@{args.version}: {info['Error']}\n")
            return 1
        with open(info["GoMod"]) as fh:
            dep_mod = fh.read()
        lines = [f"module hopbench.local/build/{args.name}", "", f"go {go_directive(dep_mod)}", ""]
        reps = replaces(dep_mod, args.staging_version, args.staging_prefix)
        if reps:
            lines += ["replace (", *[f"\t{r}" for r in reps], ")", ""]
        with open(os.path.join(work, "go.mod"), "w") as fh:
            fh.write("\n".join(lines))
        run([args.go, "get", f"{args.module}@{args.version}"], work, env)
        verb = ["test", "-c"] if test_binary else ["build"]
        cmd = [args.go, *verb, "-trimpath", "-ldflags", args.ldflags, "-o", target + ".tmp"]
        if args.tags:
            cmd += ["-tags", args.tags]
        run([*cmd, args.package], work, env)
    os.replace(target + ".tmp", target)
    print(json.dumps({"changed": True, "path": target, "version": args.version, "go": go_version}))
    return 0


def _tree_sha256(root: str) -> str:
    """sha256 over the relative paths and contents of every file under `root`, in order."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
