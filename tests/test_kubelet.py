from cri_api.v1 import api_pb2 as cri

from bench.node import kubelet


def test_requests_are_what_kubelet_sends(tmp_path):
    pod = kubelet.Pod(name="p", run_id="run1", log_root=str(tmp_path / "logs"), state_root=str(tmp_path / "state"))
    sb = kubelet.sandbox_config(pod)
    ns = sb.linux.security_context.namespace_options
    assert ns.pid == cri.NamespaceMode.CONTAINER  # kubelet's default, not the protobuf default POD
    assert ns.network == cri.NamespaceMode.POD and ns.ipc == cri.NamespaceMode.POD
    assert sb.linux.cgroup_parent == f"/kubepods/besteffort/pod{pod.uid}"
    # With the systemd driver kubelet names the pod's slice (cgroupName.ToSystemd).
    systemd = kubelet.Pod(name="p", run_id="run1", uid="0f8f2a9e-1c1e-4f5e-9d55-7b0a3c1e2d44", cgroup_driver="systemd")
    assert systemd.cgroup_parent == "kubepods-besteffort-pod0f8f2a9e_1c1e_4f5e_9d55_7b0a3c1e2d44.slice"
    assert sb.log_directory.endswith(f"hopbench_p_{pod.uid}")
    assert sb.labels["io.kubernetes.pod.uid"] == pod.uid
    assert sb.labels[kubelet.RUN_LABEL] == "run1"
    assert sb.annotations["kubernetes.io/config.source"] == "api"

    c = kubelet.container_config(pod, "sha256:abc", "localhost/hopbench/workload:1", [], [])
    assert c.image.image == "sha256:abc"
    assert c.image.user_specified_image == "localhost/hopbench/workload:1"
    assert c.linux.resources.oom_score_adj == 1000 and c.linux.resources.cpu_shares == 2
    assert "/proc/kcore" in c.linux.security_context.masked_paths
    assert c.linux.security_context.namespace_options.pid == cri.NamespaceMode.CONTAINER
    assert c.log_path == "workload/0.log"
    assert {m.container_path for m in c.mounts} == {"/etc/hosts", "/dev/termination-log"}


def test_prepare_writes_the_files_kubelet_would(tmp_path):
    pod = kubelet.Pod(name="p", run_id="r", log_root=str(tmp_path / "logs"), state_root=str(tmp_path / "state"))
    pod.prepare()
    assert (tmp_path / "logs" / f"hopbench_p_{pod.uid}" / "workload").is_dir()
    assert "localhost" in (tmp_path / "state" / pod.uid / "etc-hosts").read_text()


def test_a_stacks_targets_share_one_kubelet_and_the_last_stops_it():
    from bench.node.levels.kubelet import SharedKubelets

    shared, made = SharedKubelets(), []

    def make():
        made.append(object())
        return made[-1]

    key = ("run1", "kube", "containerd@2.4.2")
    first, others = shared.acquire(key, "containerd@2.4.2/runc", make)
    assert others == []
    second, others = shared.acquire(key, "containerd@2.4.2/crun", make)
    assert second is first and others == ["containerd@2.4.2/runc"] and len(made) == 1
    # Another stack, or the same stack at another level, has its own.
    assert shared.acquire(("run1", "kube", "crio@1.36.3"), "crio@1.36.3/runc", make)[0] is not first
    assert shared.acquire(("run1", "kubelet", "containerd@2.4.2"), "containerd@2.4.2/runc", make)[0] is not first
    assert not shared.release(key, "containerd@2.4.2/runc")
    assert shared.release(key, "containerd@2.4.2/crun")
    # Once stopped, the next run of the key starts a new one.
    assert shared.acquire(key, "containerd@2.4.2/runc", make)[0] is not first
