#!/usr/bin/env python3
"""Build a single-layer OCI image archive from local files, offline and byte for byte reproducible.

There is no registry on the machines hopbench provisions, so every image is made here
from static binaries. The archive is an OCI image layout in a tar (what `ctr images
import` and `skopeo copy oci-archive:` read). With --docker-archive the same image is
also written in the `docker save` layout (manifest.json), which Docker 20.10's
`docker load` needs.

Every timestamp is zero and entries are sorted, so the same inputs always give the
same digests: running the build twice changes nothing, which keeps provisioning
idempotent. Prints one JSON object: changed, manifest_digest, config_digest.

Standard library only: it runs on the node, with the node's python3.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in sorted(entries, key=lambda e: e[0].name):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_layer(files: list[tuple[str, str, int]], links: list[tuple[str, str]]) -> bytes:
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    dirs: set[str] = set()
    for dest in [d for _, d, _ in files] + [d for d, _ in links]:
        parts = dest.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    for d in dirs:
        entries.append((_info(d, tarfile.DIRTYPE, 0o755), None))
    for src, dest, mode in files:
        with open(src, "rb") as fh:
            data = fh.read()
        entries.append((_info(dest.strip("/"), tarfile.REGTYPE, mode, len(data)), data))
    for dest, target in links:
        entries.append((_info(dest.strip("/"), tarfile.SYMTYPE, 0o777, link=target), None))
    return _tar_bytes(entries)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(args: argparse.Namespace) -> dict[str, object]:
    files = []
    for spec in args.file:
        src, dest, mode = (spec.split(":") + ["0755"])[:3]
        files.append((src, dest, int(mode, 8)))
    links = [tuple(spec.split(":", 1)) for spec in args.link]
    layer = build_layer(files, links)  # type: ignore[arg-type]
    arch = ARCH.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": json.loads(args.entrypoint),
            "Cmd": json.loads(args.cmd),
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.source": "hopbench offline image"},
        },
        "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
        "history": [{"created_by": "hopbench build_oci_image.py", "created": "1970-01-01T00:00:00Z"}],
        "created": "1970-01-01T00:00:00Z",
    }
    config_b = canonical(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha(config_b),
            "size": len(config_b),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}],
    }
    manifest_b = canonical(manifest)
    tag = args.name.rsplit(":", 1)[1]
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest_b),
                "size": len(manifest_b),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {"io.containerd.image.name": args.name, "org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    blobs = {sha(b): b for b in (layer, config_b, manifest_b)}

    def blob_entries() -> list[tuple[tarfile.TarInfo, bytes | None]]:
        out: list[tuple[tarfile.TarInfo, bytes | None]] = [
            (_info("blobs", tarfile.DIRTYPE, 0o755), None),
            (_info("blobs/sha256", tarfile.DIRTYPE, 0o755), None),
        ]
        for digest, data in blobs.items():
            out.append((_info("blobs/sha256/" + digest.split(":")[1], tarfile.REGTYPE, 0o644, len(data)), data))
        return out

    def meta(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        return _info(name, tarfile.REGTYPE, 0o644, len(data)), data

    oci = _tar_bytes(
        blob_entries() + [meta("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), meta("index.json", canonical(index))]
    )
    outputs = {args.out: oci}
    if args.docker_archive:
        docker_manifest = [
            {
                "Config": "blobs/sha256/" + sha(config_b).split(":")[1],
                "RepoTags": [args.name],
                "Layers": ["blobs/sha256/" + sha(layer).split(":")[1]],
            }
        ]
        outputs[args.docker_archive] = _tar_bytes(blob_entries() + [meta("manifest.json", canonical(docker_manifest))])

    changed = False
    for path, data in outputs.items():
        try:
            with open(path, "rb") as fh:
                if fh.read() == data:
                    continue
        except FileNotFoundError:
            pass
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        changed = True
    return {"changed": changed, "manifest_digest": sha(manifest_b), "config_digest": sha(config_b), "name": args.name}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="full reference, e.g. localhost/hopbench/pause:1")
    p.add_argument("--out", required=True, help="OCI archive to write")
    p.add_argument("--docker-archive", help="also write a docker-load archive here")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:OCTAL_MODE]")
    p.add_argument("--link", action="append", default=[], help="DEST:TARGET symlink")
    p.add_argument("--entrypoint", default="[]", help="JSON list")
    p.add_argument("--cmd", default="[]", help="JSON list")
    args = p.parse_args(argv)
    if ":" not in args.name.rsplit("/", 1)[-1]:
        p.error(f"--name {args.name!r}: expected a reference with a tag, e.g. localhost/hopbench/pause:1")
    print(json.dumps(build(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
