"""Image pulls from the node's real registry host (registry.yml: CNCF Distribution in a network
namespace of its own) through each stack's CRI, as kubelet asks for them: the image ladder's
images pushed with the distribution API, pulled by PullImage, their layers found in each
stack's own store, removed by RemoveImage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from bench import stacks
from bench.node import ladder
from bench.node.cri import CriClient, cri
from bench.node.levels.engine import EngineClient

from .conftest import playbook

pytestmark = pytest.mark.integration

DESCRIPTION = Path("/etc/hopbench/registry.json")
IMAGES_BIN = Path("/var/lib/hopbench/images/bin")


def registry_pid() -> int | None:
    try:
        pid = int(Path("/run/hopbench/registry.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


@pytest.fixture(scope="module")
def registry(provisioned):
    """The registry host, provisioned by registry.yml; stopped at the end if this module started it."""
    before = registry_pid()
    recap = playbook("registry.yml")
    assert all(h["failed"] == 0 for h in recap.values())
    desc = json.loads(DESCRIPTION.read_text())
    yield desc
    pid = registry_pid()
    if pid is not None and pid != before:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


def test_registry_yml_serves_distribution_on_its_own_host_only(registry):
    """The registry answers on the registry host's address, from a network namespace that is not
    the node's, and a second run of the playbook changes nothing."""
    reg = ladder.Registry(registry["address"], timeout_s=10)
    assert reg._request("GET", "/v2/").status == 200
    assert registry["version"] == "v3.1.2"
    pid = registry_pid()
    assert pid is not None
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink(f"/proc/{os.getpid()}/ns/net")
    assert os.readlink(f"/proc/{pid}/exe") == registry["binary"]
    # It listens on the registry host's address only, not on the node's.
    listening = subprocess.run(
        ["ip", "netns", "exec", registry["netns"], "ss", "-Htln"], capture_output=True, text=True, check=True
    ).stdout
    assert [line.split()[3] for line in listening.splitlines()] == [registry["address"]]
    again = playbook("registry.yml")
    assert all(h["changed"] == 0 for h in again.values()), [h["changed_tasks"] for h in again.values()]


def layers_in_store(stack: stacks.Stack, ref: str, image: ladder.Image) -> set[str]:
    """The image's layers (compressed digests for containerd's content store and CRI-O's
    containers-storage, diff ids for dockerd) the stack's own store holds."""
    kind = stack.kind
    if kind == "containerd":
        ctr = str(stack.extra["ctr"])
        sock = stack.cri_endpoint.removeprefix("unix://")
        out = subprocess.run(
            [ctr, "--address", sock, "--namespace", "k8s.io", "content", "ls", "--quiet"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return {b.digest for b in image.layers} & set(out)
    if kind == "crio":
        root = Path(stack.extra["state_dirs"][0]) / "storage" / "overlay-layers" / "layers.json"
        layers = json.loads(root.read_text())
        found = {layer.get(key) for layer in layers for key in ("compressed-diff-digest", "diff-digest")}
        return ({b.digest for b in image.layers} | set(image.diff_ids)) & found
    client = EngineClient(str(stack.extra["docker_endpoint"]), 30)
    try:
        inspected = client.request("GET", f"/images/{ref}/json")
    finally:
        client.close()
    return set(inspected["RootFS"]["Layers"]) & set(image.diff_ids)


def test_each_stack_pulls_the_ladders_images_from_the_registry_and_finds_their_layers_in_its_store(registry, tmp_path):
    salt = uuid.uuid4().hex[:12]
    base = ladder.write_base(tmp_path / "base.tar.gz", [(IMAGES_BIN / "workload", "/hopbench-workload", 0o755)])
    rungs = [ladder.Rung(5 * ladder.MB, layers=2), ladder.Rung(2 * ladder.MB, files="many", compression="zstd")]
    reg = ladder.Registry(registry["address"])
    images = [ladder.build(r, salt, tmp_path / "blobs", base=base) for r in rungs]
    pushed = [reg.push(image) for image in images]
    # The salted layers and the config are new to the registry; the shared base may be there
    # already from an earlier run (a deleted manifest leaves the repository's blob links).
    for image, counts in zip(images, pushed, strict=True):
        assert counts["uploaded"] >= len(image.layers), counts
        assert sum(counts.values()) == len(image.layers) + 1, counts
    for image in images:
        assert reg.manifest_digest(image.repository, image.tag) == image.manifest.digest

    targets = [s for s in stacks.discover() if s.default and not s.unavailable]
    assert {s.kind for s in targets} >= {"containerd", "docker"}
    problems = []
    try:
        for stack in targets:
            client = CriClient(stack.cri_endpoint, timeout_s=120)
            try:
                for image in images:
                    ref = f"{registry['address']}/{image.reference}"
                    spec = cri.ImageSpec(image=ref)
                    pulled = client.images.PullImage(cri.PullImageRequest(image=spec), timeout=120)
                    status = client.images.ImageStatus(cri.ImageStatusRequest(image=spec), timeout=30)
                    if not status.image.id or not pulled.image_ref:
                        problems.append(f"{stack.name}: {ref} pulled but ImageStatus has no image")
                        continue
                    want = len(image.layers)
                    found = layers_in_store(stack, ref, image)
                    if len(found) < want:
                        problems.append(f"{stack.name}: {ref}: {len(found)} of {want} layers in its store")
                    # By id, as kubelet's image garbage collection asks: cri-dockerd answers a
                    # removal by tag with success and removes nothing (its InspectImageByID
                    # does not resolve tags).
                    by_id = cri.ImageSpec(image=status.image.id)
                    client.images.RemoveImage(cri.RemoveImageRequest(image=by_id), timeout=60)
                    gone = client.images.ImageStatus(cri.ImageStatusRequest(image=spec), timeout=30)
                    if gone.image.id:
                        problems.append(f"{stack.name}: {ref} still there after RemoveImage")
            finally:
                client.close()
    finally:
        for image in images:
            reg.delete(image)
    assert not problems, problems
