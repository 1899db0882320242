"""The image ladder: OCI images written here, byte for byte reproducible, and pushed to a registry
with the distribution API (no docker, no buildkit: nothing but Python and HTTP).

An image is a shared base layer (the workload binary and busybox, so a pulled image can run as a
pod and its base is deduplicated across the ladder) plus the layers its `Rung` asks for: a size,
a number of layers of equal size, one large file or many small ones per layer, and a compression
(gzip, zstd or none). The data compresses like real software (about 2.7 with gzip; random bytes
would not compress at all and text too well): 4 KiB chunks, 36 % of them fresh random bytes and
the others a copy of one of the last few chunks, which deflate and zstd both find.

A salt goes into every layer, so each run pushes images no store has seen (cold pulls start
from nothing); the same salt and rung give the same digests.

The registry speaks plain HTTP on the registry host's address (roles/registry): blob uploads
are monolithic (POST then PUT with the digest), a blob the repository already has is skipped
(HEAD), and one another repository of the ladder has is mounted, as the distribution spec says.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import tarfile
import urllib.parse
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import zstandard

from bench.scenario import PULL_COMPRESSIONS, PULL_FILES, PullRung

MB = 1000 * 1000
CHUNK = 4096
FRESH = 0.36  # share of fresh random chunks: gzip -6 ratio about 2.7 (measured in test_ladder)
RECENT = 6  # a repeated chunk is one of the last RECENT chunks (inside deflate's 32 KiB window)
SMALL_FILE = 16 * 1024  # "many small files": files of this size
COMPRESSIONS = PULL_COMPRESSIONS
FILES = PULL_FILES
MEDIA = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclasses.dataclass(frozen=True)
class Rung:
    """One image of the ladder. `size` is the uncompressed bytes of its own layers (the shared
    base comes on top)."""

    size: int
    layers: int = 1
    files: str = "one"
    compression: str = "gzip"

    def __post_init__(self) -> None:
        if self.size <= 0 or self.layers <= 0:
            raise ValueError(f"rung: size and layers must be positive, not {self.size} and {self.layers}")
        if self.files not in FILES:
            raise ValueError(f"rung: files {self.files!r}: expected one of {', '.join(FILES)}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"rung: compression {self.compression!r}: expected one of {', '.join(COMPRESSIONS)}")

    @classmethod
    def of(cls, rung: PullRung) -> Rung:
        """The rung a scenario's pull section names."""
        return cls(round(rung.size_mb * MB), rung.layers, rung.files, rung.compression)

    @property
    def label(self) -> str:
        """How samples and reports name it: 100mb-20l-many-zstd."""
        size = f"{self.size // MB}mb" if self.size % MB == 0 else f"{self.size}b"
        return f"{size}-{self.layers}l-{self.files}-{self.compression}"

    @property
    def name(self) -> str:
        """The repository name: hopbench/ladder-100mb-20l-many-zstd."""
        return f"hopbench/ladder-{self.label}"


# The default ladder: size at one layer, layer count and file shape at 100 MB, the compressions.
LADDER = (
    Rung(5 * MB),
    Rung(100 * MB),
    Rung(1000 * MB),
    Rung(100 * MB, layers=5),
    Rung(100 * MB, layers=20),
    Rung(100 * MB, layers=50),
    Rung(100 * MB, files="many"),
    Rung(100 * MB, compression="zstd"),
    Rung(100 * MB, compression="none"),
    Rung(100 * MB, layers=20, compression="zstd"),
)


@dataclasses.dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str
    path: Path | None = None  # on disk (layers), or
    data: bytes = b""  # in memory (config, manifest)

    def chunks(self) -> Iterator[bytes]:
        if self.path is None:
            yield self.data
            return
        with self.path.open("rb") as fh:
            while block := fh.read(1 << 20):
                yield block


@dataclasses.dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def bytes_compressed(self) -> int:
        return sum(b.size for b in self.layers)


def payload(seed: str, size: int) -> Iterator[bytes]:
    """`size` bytes that compress like software, in pieces, reproducible from `seed`."""
    rng = random.Random(seed)  # noqa: S311 - reproducible filler data, not a secret
    recent: list[bytes] = []
    left = size
    while left > 0:
        piece = bytearray()
        while len(piece) < (1 << 20) and len(piece) < left:
            chunk = rng.randbytes(CHUNK) if not recent or rng.random() < FRESH else recent[rng.randrange(len(recent))]
            recent.append(chunk)
            if len(recent) > RECENT:
                recent.pop(0)
            piece += chunk
        out = bytes(piece[:left])
        left -= len(out)
        yield out


class _Stream(io.RawIOBase):
    """A write-only sink: hashes what tar writes (the diff id) and passes it to a compressor that
    writes the blob, hashed too."""

    def __init__(self, out: Any, compression: str) -> None:
        self.raw = out
        self.diff = hashlib.sha256()
        self.blob = hashlib.sha256()
        self.size = 0
        self.compression = compression
        if compression == "gzip":
            self.sink: Any = gzip.GzipFile(fileobj=self, mode="wb", compresslevel=6, mtime=0)
        elif compression == "zstd":
            self.sink = zstandard.ZstdCompressor(level=3).stream_writer(self, closefd=False)  # type: ignore[arg-type]
        else:
            self.sink = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:  # the compressor's output: the blob
        data = bytes(data)
        self.blob.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def feed(self, data: bytes) -> None:  # tar's output
        self.diff.update(data)
        if self.sink is None:
            self.write(data)
        else:
            self.sink.write(data)

    def finish(self) -> None:
        if self.sink is not None:
            self.sink.close()


class _TarSink(io.RawIOBase):
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.stream.feed(data)
        return len(data)


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size = kind, mode, size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Reader(io.RawIOBase):
    """A file object over payload() pieces, for tarfile.addfile."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces = pieces
        self.buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buf) < n) and (piece := next(self.pieces, None)) is not None:
            self.buf += piece
        out, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return out


def write_layer(path: Path, files: list[tuple[str, int, str]], compression: str) -> tuple[Blob, str]:
    """A layer of (name, size, seed) files, written to `path`: its blob and its diff id."""
    with path.open("wb") as out:
        stream = _Stream(out, compression)
        with tarfile.open(fileobj=_TarSink(stream), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            dirs = sorted({str(parent) for name, _, _ in files for parent in Path(name).parents} - {"."})
            for d in dirs:
                tar.addfile(_info(d, kind=tarfile.DIRTYPE, mode=0o755))
            for name, size, seed in sorted(files):
                tar.addfile(_info(name, size), _Reader(payload(seed, size)))
        stream.finish()
    blob = Blob("sha256:" + stream.blob.hexdigest(), stream.size, MEDIA[compression], path=path)
    return blob, "sha256:" + stream.diff.hexdigest()


def write_base(path: Path, files: list[tuple[Path, str, int]], salt: str = "") -> tuple[Blob, str]:
    """The shared base layer (gzip): files of the node (source, path in the image, mode), e.g. the
    workload binary and busybox, so that every image of the ladder runs as a pod. One base for
    the whole ladder: a store pulls it once (deduplication). `salt` (a file of its own) gives a
    base no other ladder shares: images pulled side by side must not share a layer, or one
    worker's RemoveImage drops a layer another worker's pull is building on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        stream = _Stream(out, "gzip")
        with tarfile.open(fileobj=_TarSink(stream), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            entries = [(dest.strip("/"), src.read_bytes(), mode) for src, dest, mode in files]
            if salt:
                entries.append(("hopbench-base-salt", salt.encode(), 0o644))
            for name, data, mode in sorted(entries):
                tar.addfile(_info(name, len(data), mode=mode), io.BytesIO(data))
        stream.finish()
    return Blob(
        "sha256:" + stream.blob.hexdigest(), stream.size, MEDIA["gzip"], path=path
    ), "sha256:" + stream.diff.hexdigest()


def layer_files(rung: Rung, index: int, salt: str) -> list[tuple[str, int, str]]:
    """The files of layer `index` of a rung: one file, or files of SMALL_FILE bytes, and a salt file."""
    size = rung.size // rung.layers + (1 if index < rung.size % rung.layers else 0)
    top = f"ladder/{index:02d}"
    seed = f"{salt}/{rung.name}/{index}"
    salted = [(f"{top}/salt", len(salt.encode()) or 1, f"{seed}/salt")]
    if rung.files == "one":
        return [(f"{top}/data", size, seed), *salted]
    count, rest = divmod(size, SMALL_FILE)
    files = [(f"{top}/d{i // 256:03d}/f{i % 256:03d}", SMALL_FILE, f"{seed}/{i}") for i in range(count)]
    if rest:
        files.append((f"{top}/rest", rest, f"{seed}/rest"))
    return files + salted


def _json_blob(obj: object, media_type: str) -> Blob:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type, data=data)


def build(
    rung: Rung, salt: str, workdir: Path, base: tuple[Blob, str] | None = None, entrypoint: list[str] | None = None
) -> Image:
    """The rung's image with this salt, its layers written under `workdir`. `base` (a layer blob
    and its diff id) goes first when given; `entrypoint` is the config's."""
    workdir.mkdir(parents=True, exist_ok=True)
    layers: list[Blob] = []
    diff_ids: list[str] = []
    if base is not None:
        layers.append(base[0])
        diff_ids.append(base[1])
    stem = rung.name.replace("/", "_")
    for i in range(rung.layers):
        blob, diff = write_layer(workdir / f"{stem}-{salt}-{i:02d}.tar", layer_files(rung, i, salt), rung.compression)
        layers.append(blob)
        diff_ids.append(diff)
    config = _json_blob(
        {
            "architecture": ARCH.get(os.uname().machine, os.uname().machine),
            "os": "linux",
            "config": {"Entrypoint": entrypoint or ["/hopbench-workload"], "Labels": {"hopbench.salt": salt}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        },
        CONFIG,
    )
    manifest = _json_blob(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
        },
        MANIFEST,
    )
    return Image(rung.name, salt, manifest, config, tuple(layers), tuple(diff_ids))


class RegistryError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes


class Registry:
    """The distribution API of one plain-HTTP registry (host:port)."""

    def __init__(self, address: str, timeout_s: float = 300.0) -> None:
        self.address = address
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Response:
        conn = http.client.HTTPConnection(self.address, timeout=self.timeout_s)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        except OSError as e:
            raise RegistryError(f"registry {self.address}: {method} {path}: {e}") from e
        finally:
            conn.close()

    def _expect(self, resp: Response, codes: tuple[int, ...], what: str) -> Response:
        if resp.status not in codes:
            raise RegistryError(
                f"registry {self.address}: {what}: HTTP {resp.status} {resp.body.decode(errors='replace')[:300]}"
            )
        return resp

    def has_blob(self, repository: str, digest: str) -> bool:
        return self._request("HEAD", f"/v2/{repository}/blobs/{digest}").status == 200

    def push_blob(self, repository: str, blob: Blob, mount_from: str = "") -> str:
        """Upload a blob the repository lacks: 'present', 'mounted' or 'uploaded'."""
        if self.has_blob(repository, blob.digest):
            return "present"
        query = urllib.parse.urlencode({"mount": blob.digest, "from": mount_from}) if mount_from else ""
        resp = self._expect(
            self._request("POST", f"/v2/{repository}/blobs/uploads/" + (f"?{query}" if query else "")),
            (201, 202),
            f"start the upload of {blob.digest} to {repository}",
        )
        if resp.status == 201:
            return "mounted"
        location = resp.headers.get("Location") or ""
        url = urllib.parse.urlsplit(location)
        sep = "&" if url.query else "?"
        target = (
            (url.path or location)
            + (f"?{url.query}" if url.query else "")
            + sep
            + urllib.parse.urlencode({"digest": blob.digest})
        )
        self._expect(
            self._request(
                "PUT",
                target,
                body=blob.chunks(),
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
            ),
            (201,),
            f"upload {blob.digest} ({blob.size} bytes) to {repository}",
        )
        return "uploaded"

    def push(self, image: Image, mount_from: str = "") -> dict[str, int]:
        """Push an image (its blobs, then its manifest under its tag): how many blobs were present,
        mounted or uploaded."""
        counts = {"present": 0, "mounted": 0, "uploaded": 0}
        for blob in (*image.layers, image.config):
            counts[self.push_blob(image.repository, blob, mount_from)] += 1
        self._expect(
            self._request(
                "PUT",
                f"/v2/{image.repository}/manifests/{image.tag}",
                body=image.manifest.data,
                headers={"Content-Type": MANIFEST},
            ),
            (201,),
            f"put the manifest of {image.reference}",
        )
        return counts

    def manifest_digest(self, repository: str, tag: str) -> str:
        resp = self._expect(
            self._request("HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST}),
            (200,),
            f"resolve {repository}:{tag}",
        )
        return resp.headers.get("Docker-Content-Digest") or ""

    def delete(self, image: Image) -> None:
        """Delete the image's manifest (the registry's garbage collection then frees its blobs)."""
        self._expect(
            self._request("DELETE", f"/v2/{image.repository}/manifests/{image.manifest.digest}"),
            (202, 404),
            f"delete {image.reference}",
        )
