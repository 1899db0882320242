"""Image pulls from the node's real registry host (registry.yml: CNCF Distribution in a network
namespace of its own) through each stack's CRI, as kubelet asks for them: the image ladder's
images pushed with the distribution API, pulled by PullImage, their layers found in each
stack's own store, removed by RemoveImage."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2 as cri

from bench import stacks
from bench.node import ladder
from bench.node.cri import CriClient
from bench.node.levels import image as image_level

from .conftest import playbook, registry_pid

pytestmark = pytest.mark.integration

IMAGES_BIN = Path("/var/lib/hopbench/images/bin")


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
                    found = image_level.stored_layers(stack, image, ref)
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


PULL_SCENARIO = """\
targets: [containerd/runc, crio/runc, docker/runc]
levels: [image]
iterations: 3
warmup: 1
concurrency: [1, 2]
timeout_s: 120
control: false
pull:
  rungs:
    - {size_mb: 4, layers: 2}
    - {size_mb: 2, files: many, compression: zstd}
    - {size_mb: 3, same: true}
  links: [{rate: 100mbit}, {}]
  modes: [cold, warm]
"""


def test_level_image_pulls_the_ladder_cold_and_warm_through_each_stack(registry, tmp_path):
    """`hopbench run` with level image: every lifecycle complete on every stack, each cold pull
    moved at least the image's own layers over the registry link and each warm pull far less,
    every RemoveImage left the store without the image's layers (the cold check), the report
    has its section, and no image of the run is left in any store or the registry. Under the
    100 Mbit/s link shape a cold pull takes at least its bytes' time at that rate; one image the
    two workers of a round pull together crossed the link at least once; the link has its
    provisioned shape back after the run."""
    from .conftest import run_scenario

    run, meta, samples = run_scenario(tmp_path, "pulltest", PULL_SCENARIO)
    image_samples = samples[samples["level"] == "image"]
    assert image_samples["ok"].all(), image_samples[~image_samples["ok"]][["stack", "op", "error"]].to_string()
    stacks_seen = set(image_samples["stack"].map(lambda s: s.split("@")[0]))
    assert stacks_seen >= {"containerd", "docker"}, stacks_seen
    checks = [json.loads(line) for line in (run / "checks.jsonl").read_text().splitlines()]
    image_checks = [c for c in checks if c["level"] == "image"]
    assert image_checks and all(c["ok"] for c in image_checks), [c for c in image_checks if not c["ok"]]
    pulls = [json.loads(line) for line in (run / "pulls.jsonl").read_text().splitlines()]
    assert len(pulls) == len(image_samples[image_samples["op"].str.startswith("PullImage")])
    for p in pulls:
        if p["concurrency"] != 1 or not p["ok"]:
            continue
        own = p["blob_bytes"] - 0  # the base layer may already be there from another rung
        if p["mode"] == "cold":
            assert p["wire_bytes"] >= 0.5 * own, p
        else:
            assert 0 <= p["wire_bytes"] < 0.2 * own, p
    shaped = [p for p in pulls if p["ok"] and p["mode"] == "cold" and p["link"] == "100mbit"]
    assert shaped and {p["link"] for p in pulls} == {"100mbit", "unshaped"}
    for p in shaped:
        own = p["blob_bytes"] * 0.5  # the base layer may be in the store already
        assert p["duration_ns"] / 1e9 >= 0.9 * own * 8 / 100e6, p
    together = [p for p in pulls if p["ok"] and p["same"] and p["mode"] == "cold" and p["concurrency"] == 2]
    assert together and all(p["round_wire_bytes"] >= 0.5 * p["blob_bytes"] for p in together), together
    assert {p["worker"] for p in together} == {0, 1}
    qdisc = subprocess.run(
        ["tc", "-j", "qdisc", "show", "dev", registry["link"]], capture_output=True, text=True, check=True
    )
    roots = [q["kind"] for q in json.loads(qdisc.stdout) if q.get("root")]
    assert roots == [registry["shape"]["qdisc"][0]], roots
    facts = meta["node_facts"]
    assert facts["registry"]["address"] == registry["address"]
    assert all("pull" in c for c in facts["stacks"].values())
    report = (run / "report.md").read_text() if (run / "report.md").exists() else ""
    html = (run / "report.html").read_text()
    assert "Image pulls" in html, report[:2000]
    # Nothing of the run left: each stack's store and the registry's tags.
    for stack in [s for s in stacks.discover() if s.default and not s.unavailable]:
        client = CriClient(stack.cri_endpoint, timeout_s=30)
        try:
            listed = client.images.ListImages(cri.ListImagesRequest(), timeout=30).images
        finally:
            client.close()
        left = [t for im in listed for t in im.repo_tags if "/hopbench/ladder-" in t]
        assert not left, (stack.name, left)
