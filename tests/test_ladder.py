"""The image ladder's images (bench/node/ladder.py): reproducible, salted, valid OCI layers whose
data compresses like software. Pushing and pulling them through the stacks is
tests/integration/test_pull.py."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import zlib
from pathlib import PurePath

import pytest
import zstandard

from bench.node import ladder

MB = ladder.MB


def decompressed(blob: ladder.Blob) -> bytes:
    assert blob.path is not None
    data = blob.path.read_bytes()
    if blob.media_type.endswith("+gzip"):
        return gzip.decompress(data)
    if blob.media_type.endswith("+zstd"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def test_the_same_salt_gives_the_same_digests_and_another_salt_others(tmp_path):
    rung = ladder.Rung(MB // 2, layers=2)
    a = ladder.build(rung, "s1", tmp_path / "a")
    b = ladder.build(rung, "s1", tmp_path / "b")
    c = ladder.build(rung, "s2", tmp_path / "c")
    assert a.manifest.digest == b.manifest.digest
    assert [x.digest for x in a.layers] == [x.digest for x in b.layers]
    assert not {x.digest for x in a.layers} & {x.digest for x in c.layers}
    assert a.manifest.digest != c.manifest.digest


@pytest.mark.parametrize("compression", ladder.COMPRESSIONS)
@pytest.mark.parametrize("files", ladder.FILES)
def test_each_layer_is_a_tar_whose_digests_are_what_the_manifest_and_config_say(tmp_path, compression, files):
    rung = ladder.Rung(300_000, layers=3, files=files, compression=compression)
    image = ladder.build(rung, "salt", tmp_path)
    manifest = json.loads(image.manifest.data)
    config = json.loads(image.config.data)
    config_digest = "sha256:" + hashlib.sha256(image.config.data).hexdigest()
    assert manifest["config"]["digest"] == image.config.digest == config_digest
    assert config["rootfs"]["diff_ids"] == list(image.diff_ids)
    total = 0
    for entry, blob, diff_id in zip(manifest["layers"], image.layers, image.diff_ids, strict=True):
        assert entry["mediaType"] == ladder.MEDIA[compression]
        assert blob.path is not None and blob.path.stat().st_size == entry["size"]
        assert "sha256:" + hashlib.sha256(blob.path.read_bytes()).hexdigest() == entry["digest"]
        raw = decompressed(blob)
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            members = tar.getmembers()
        regular = [m for m in members if m.isfile()]
        data = [m for m in regular if not m.name.endswith("/salt")]
        total += sum(m.size for m in data)
        assert all(m.mtime == 0 and m.uid == 0 for m in members)
        if files == "one":
            assert len(data) == 1
        else:
            assert max(m.size for m in data) <= ladder.SMALL_FILE and len(data) > 5
        names = {m.name for m in members}
        assert all(str(p) in names for m in regular for p in PurePath(m.name).parents if str(p) != ".")
    assert total == rung.size


def test_the_data_compresses_like_software_not_like_random_bytes_or_text():
    """gzip -6 ratio about 2.7 (the issue asks 2.5-3): 4 MB is enough for a stable ratio."""
    data = b"".join(ladder.payload("ratio", 4 * MB))
    assert len(data) == 4 * MB
    ratio = len(data) / len(zlib.compress(data, 6))
    assert 2.4 < ratio < 3.0, ratio
    zratio = len(data) / len(zstandard.ZstdCompressor(level=3).compress(data))
    assert 2.4 < zratio < 3.2, zratio


def test_a_base_layer_goes_first_and_is_the_same_blob_in_every_image(tmp_path):
    binary = tmp_path / "workload"
    binary.write_bytes(b"\x7fELF" + b"x" * 1000)
    base = ladder.write_base(tmp_path / "base.tar.gz", [(binary, "/hopbench-workload", 0o755)])
    one = ladder.build(ladder.Rung(100_000), "s", tmp_path / "1", base=base)
    two = ladder.build(ladder.Rung(200_000, compression="zstd"), "s", tmp_path / "2", base=base)
    assert one.layers[0].digest == two.layers[0].digest == base[0].digest
    assert one.diff_ids[0] == base[1]
    with tarfile.open(fileobj=io.BytesIO(decompressed(base[0]))) as tar:
        member = tar.getmember("hopbench-workload")
    assert member.mode == 0o755


def test_a_rung_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="compression 'brotli'"):
        ladder.Rung(MB, compression="brotli")
    with pytest.raises(ValueError, match="files 'some'"):
        ladder.Rung(MB, files="some")
    with pytest.raises(ValueError, match="positive"):
        ladder.Rung(0)


def test_names_say_the_rung():
    rung = ladder.Rung(100 * MB, layers=20, files="many", compression="zstd")
    assert rung.name == "hopbench/ladder-100mb-20l-many-zstd"
    assert len({r.name for r in ladder.LADDER}) == len(ladder.LADDER)
