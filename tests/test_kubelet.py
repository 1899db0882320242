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
