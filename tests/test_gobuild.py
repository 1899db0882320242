"""The Go module builder's replace-directive parsing and the toolchain installer (pure logic)."""

import importlib.util
import os
import zipfile
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[1] / "ansible/roles/gobuild/files"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, FILES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mod = _load("build_go_module")
toolchain = _load("go_toolchain")


def test_replaces_from_blocks_and_lines_without_local_paths():
    gomod = """module example.com/x

go 1.21

replace (
\tk8s.io/api => k8s.io/api v0.27.8 // pinned
\tk8s.io/cri-api/v1alpha2 => k8s.io/cri-api v0.25.16
\texample.com/local => ./staging/local
)

replace google.golang.org/grpc/naming => google.golang.org/grpc v1.29.0
"""
    assert mod.replaces(gomod) == [
        "k8s.io/api => k8s.io/api v0.27.8",
        "k8s.io/cri-api/v1alpha2 => k8s.io/cri-api v0.25.16",
        "google.golang.org/grpc/naming => google.golang.org/grpc v1.29.0",
    ]
    assert mod.go_directive(gomod) == "1.21"


def test_staging_replacements_become_the_published_staging_modules():
    gomod = """module k8s.io/kubernetes

go 1.26.0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/kubelet => ./staging/src/k8s.io/kubelet
\tgithub.com/x/y v1.0.0 => github.com/x/y v1.0.1
)
"""
    assert mod.replaces(gomod, "v0.36.3") == [
        "k8s.io/api => k8s.io/api v0.36.3",
        "k8s.io/kubelet => k8s.io/kubelet v0.36.3",
        "github.com/x/y v1.0.0 => github.com/x/y v1.0.1",
    ]
    assert mod.replaces(gomod) == ["github.com/x/y v1.0.0 => github.com/x/y v1.0.1"]
    etcd = "replace (\n\tgo.etcd.io/etcd/api/v3 => ../api\n)\nreplace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY\n"
    assert mod.replaces(etcd, "v3.6.14", "go.etcd.io/etcd/") == [
        "go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.14"
    ]


def test_the_toolchain_zip_is_fetched_as_goproxy_serves_golang_org_toolchain():
    assert toolchain.module_version("1.26.8", "linux", "amd64") == "v0.0.1-go1.26.8.linux-amd64"
    assert (
        toolchain.zip_url(
            toolchain.first_proxy("direct,https://goproxy.lab.example/,https://proxy.golang.org"),
            "1.26.8",
            "linux",
            "arm64",
        )
        == "https://goproxy.lab.example/golang.org/toolchain/@v/v0.0.1-go1.26.8.linux-arm64.zip"
    )
    assert toolchain.first_proxy("https://a|https://b") == "https://a"
    with pytest.raises(SystemExit, match="names no proxy"):
        toolchain.first_proxy("direct,off")


def _zip(path: Path, entries: dict[str, tuple[bytes, int]]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, data)


def test_the_toolchain_is_unpacked_with_its_modes_and_nothing_outside_its_folder(tmp_path):
    prefix = "golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64/"
    good = tmp_path / "good.zip"
    _zip(good, {prefix + "bin/go": (b"#!", 0o755), prefix + "src/x.go": (b"package x", 0o644)})
    dest = tmp_path / "out"
    toolchain.unpack(str(good), str(dest), prefix)
    assert os.access(dest / "bin/go", os.X_OK) and not os.access(dest / "src/x.go", os.X_OK)

    for bad_name, why in ((prefix + "../../escape", "leaves the toolchain folder"), ("other/bin/go", "is not under")):
        bad = tmp_path / "bad.zip"
        _zip(bad, {bad_name: (b"x", 0o644)})
        with pytest.raises(SystemExit, match=why):
            toolchain.unpack(str(bad), str(tmp_path / "out2"), prefix)
    assert not (tmp_path / "escape").exists()


def test_a_toolchain_zip_with_another_sha256_is_refused_and_not_unpacked(tmp_path, capsys):
    prefix = "golang.org/toolchain@v0.0.1-go1.26.8.linux-amd64/"
    offline = tmp_path / "go.zip"
    _zip(offline, {prefix + "bin/go": (b"#!/bin/sh\n", 0o755)})
    rc = toolchain.main(
        [
            "--version=1.26.8",
            "--sha256=" + "0" * 64,
            "--goarch=amd64",
            f"--cache-dir={tmp_path / 'cache'}",
            f"--zip={offline}",
        ]
    )
    assert rc == 1
    assert "expected gobuild_go_sha256 " + "0" * 64 in capsys.readouterr().err
    assert not (tmp_path / "cache/toolchains/go1.26.8.linux-amd64").exists()


def test_an_existing_go_of_another_version_is_refused(tmp_path, capsys):
    fake = tmp_path / "go"
    fake.write_text("#!/bin/sh\necho go1.19.8\n")
    fake.chmod(0o755)
    assert toolchain.main(["--version=1.26.8", "--goarch=amd64", f"--existing={fake}"]) == 1
    assert f"gobuild_go_existing {fake} is Go 1.19.8; the pinned toolchain is Go 1.26.8" in capsys.readouterr().err


def test_the_builder_refuses_a_go_named_by_bare_name():
    with pytest.raises(SystemExit, match="not a name looked up on PATH"):
        mod.toolchain_version("go")
