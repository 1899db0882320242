"""The replace-directive parsing of the Go module builder (pure logic)."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "ansible/roles/gobuild/files/build_go_module.py"
spec = importlib.util.spec_from_file_location("build_go_module", PATH)
assert spec and spec.loader
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)


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
