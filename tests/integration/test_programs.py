"""What the daemons run, and where each program comes from: nothing found by luck.

A fresh machine failed where this one passed because CRI-O found a `conmon` that an earlier
session had installed by hand (its built-in crun handler looks one up on PATH), and because every
Go build ran a toolchain this machine's image happens to ship. These tests hold the class of
defect, not only the two instances:
- CRI-O, from the role's own binary and configuration, starts and runs a container with no
  `conmon` anywhere on its PATH;
- a Go build runs the toolchain the gobuild role installed, with /usr/local/go out of reach;
- every daemon's effective configuration (what the daemon itself reports) names each program it
  runs by an absolute path that exists;
- every program the daemons and their children execute during a run comes from a path a role
  installed, or from a Debian package a role installs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

from bench import stacks

from .conftest import ANSIBLE, run_scenario

pytestmark = pytest.mark.integration

ROLES = ANSIBLE / "roles"
HOPBENCH_PREFIXES = ("/usr/local/lib/hopbench/", "/var/cache/hopbench/")
IMAGES = Path("/var/lib/hopbench/images")
GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def load_module(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


crio_effective = load_module(ROLES / "crio/files/crio_effective.py", "crio_effective")


def available(kind: str) -> list[stacks.Stack]:
    return [s for s in stacks.discover() if s.kind == kind and not s.unavailable]


def the_crio() -> stacks.Stack:
    found = available("crio")
    if not found:
        pytest.skip(
            "CRI-O is unavailable on this node (test_provision.test_crio_is_installed_from_its_checked_bundle says why)"
        )
    return found[0]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def crio_command(stack: stacks.Stack) -> tuple[str, str, str]:
    """(crio binary, its configuration file, its drop-in folder) as the role runs it."""
    (daemon,) = stack.daemons
    pid = daemon.pid()
    assert pid is not None, "crio is not running"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    conf = argv[argv.index("--config") + 1]
    assert "--config-dir" in argv, (
        f"crio runs without its own drop-in folder ({argv}): it would merge /etc/crio/crio.conf.d"
    )
    return daemon.exec, conf, argv[argv.index("--config-dir") + 1]


def crio_status_config(binary: str, conf: str, dropin: str, socket: str) -> dict:
    out = subprocess.run(
        [binary, "--config", conf, "--config-dir", dropin, "status", "--socket", socket, "config"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return tomllib.loads(out.stdout)


def offered_handlers(stack: stacks.Stack) -> set[str]:
    return {name for name, h in stack.handlers.items() if h.available}


def test_crio_runs_a_container_with_no_conmon_on_its_path(provisioned, tmp_path):
    """A second CRI-O from the role's binary, configuration and drop-in folder (its own socket,
    storage and state) with the daemon's own PATH, minus any `conmon`: every program on that PATH
    but conmon is there (Debian's crun included, which CRI-O's built-in crun handler finds). It
    starts, serves exactly the offered handlers, and runs a container through the role's conmon."""
    stack = the_crio()
    binary, conf, dropin = crio_command(stack)
    (daemon,) = stack.daemons
    daemon_path = environ_of(daemon.pid() or 0).get("PATH", "")
    shadow = []
    for i, folder in enumerate(p for p in daemon_path.split(":") if p):
        copy = tmp_path / "path" / str(i)
        copy.mkdir(parents=True)
        for entry in os.scandir(folder) if os.path.isdir(folder) else []:
            if entry.name != "conmon" and os.access(entry.path, os.X_OK):
                (copy / entry.name).symlink_to(entry.path)
        shadow.append(str(copy))
    assert shutil.which("conmon", path=":".join(shadow)) is None

    root = tmp_path / "crio"
    sock = root / "crio.sock"
    state = {name: root / name for name in ("storage", "runstorage", "exits", "attach", "ns", "logs", "pods")}
    for p in state.values():
        p.mkdir(parents=True)
    argv = [
        binary, "--config", conf, "--config-dir", dropin,
        "--listen", str(sock), "--root", str(state["storage"]), "--runroot", str(state["runstorage"]),
        "--container-exits-dir", str(state["exits"]), "--container-attach-socket-dir", str(state["attach"]),
        "--namespaces-dir", str(state["ns"]), "--log-dir", str(state["logs"]),
        "--version-file", str(root / "version"), "--version-file-persist", str(root / "version.persist"),
        "--clean-shutdown-file", str(root / "clean.shutdown"), "--enable-metrics=false",
    ]  # fmt: skip
    log = (root / "crio.log").open("w")
    env = {**environ_of(daemon.pid() or 0), "PATH": ":".join(shadow)}
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    crictl = [
        str(Path("/usr/local/lib/hopbench/bin/crictl")),
        "--runtime-endpoint",
        f"unix://{sock}",
        "--timeout",
        "60s",
    ]
    cgroup = f"/hopbench-test-{uuid.uuid4().hex[:8]}"
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and proc.poll() is None and not sock.exists():
            time.sleep(0.2)
        assert proc.poll() is None and sock.exists(), (root / "crio.log").read_text()[-3000:]
        _run([*crictl, "version"])

        seen = crio_status_config(binary, conf, dropin, str(sock))
        checked = crio_effective.check(seen, offered_handlers(stack))
        assert checked["problems"] == [], checked
        conmon = stack.components["conmon"][0]
        assert {h["monitor_path"] for h in checked["handlers"].values()} == {conmon}

        # The offline images into this CRI-O's own storage (the images role's archives), then one
        # container through conmon.
        image = stack.workload_image
        for name, ref in (("workload", image), ("pause", stack.pause_image)):
            store = f"containers-storage:[overlay@{state['storage']}+{state['runstorage']}]{ref}"
            _run(["/usr/bin/skopeo", "copy", f"oci-archive:{IMAGES / name}.oci.tar", store])
        uid = uuid.uuid4().hex
        pod = {
            "metadata": {"name": "noconmon", "namespace": "hopbench-test", "uid": uid},
            "log_directory": str(state["pods"]),
            "linux": {"cgroup_parent": f"{cgroup}/pod{uid}", "security_context": {"namespace_options": {"pid": 1}}},
        }
        ctr = {"metadata": {"name": "w"}, "image": {"image": image, "user_specified_image": image},
               "command": ["/bin/sleep", "30"], "log_path": "w.log",
               "linux": {"security_context": {"namespace_options": {"pid": 1}}}}  # fmt: skip
        (tmp_path / "pod.json").write_text(json.dumps(pod))
        (tmp_path / "ctr.json").write_text(json.dumps(ctr))
        sid = _run([*crictl, "runp", str(tmp_path / "pod.json")]).strip()
        cid = ""
        try:
            cid = _run([*crictl, "create", sid, str(tmp_path / "ctr.json"), str(tmp_path / "pod.json")]).strip()
            _run([*crictl, "start", cid])
            monitors = [pid for pid in _pids() if _exe(pid) == conmon and str(state["exits"]) in _cmdline(pid)]
            assert monitors, "no conmon of the role's monitors the container"
            inspect = json.loads(_run([*crictl, "inspect", cid]))
            assert inspect["status"]["state"] == "CONTAINER_RUNNING", inspect["status"]
        finally:
            subprocess.run([*crictl, "stop", "-t", "0", *([cid] if cid else [])], capture_output=True, timeout=120)
            subprocess.run([*crictl, "stopp", sid], capture_output=True, timeout=120)
            subprocess.run([*crictl, "rmp", "-f", sid], capture_output=True, timeout=120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        log.close()
        from bench.node.cri import remove_cgroup_tree

        remove_cgroup_tree(cgroup)
        # CRI-O's overlay storage leaves its layers mounted until unmounted; none may outlive the test.
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            mountpoint = line.split()[4]
            if mountpoint.startswith(str(root)):
                subprocess.run(["umount", "-l", mountpoint], capture_output=True, check=False)


def _run(argv: list[str], timeout: float = 120) -> str:
    """Run a command; its stdout, or a failure naming the command and its stderr."""
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(argv)} failed ({out.returncode}): {out.stderr[-3000:]}"
    return out.stdout


def _pids() -> list[int]:
    return [int(e.name) for e in os.scandir("/proc") if e.name.isdigit()]


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_go_builds_use_the_toolchain_the_role_installed(provisioned, tmp_path):
    """A build through the gobuild role with /usr/local/go hidden (an empty tmpfs over it, in a
    mount namespace of the build's own) and no `go` on PATH: it must still build, with the pinned
    Go the role installed under the build cache, and say so."""
    defaults = yaml.safe_load((ROLES / "gobuild/defaults/main.yml").read_text())
    pinned = defaults.get("gobuild_go_version", "(none pinned)")
    path = ":".join(d for d in os.environ.get("PATH", "").split(":") if d and not os.path.exists(os.path.join(d, "go")))
    marker = uuid.uuid4().hex
    started = time.time()
    argv = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        str(Path(__file__).parent / "playbooks/gobuild_probe.yml"),
        "-e", f"probe_dir={tmp_path} probe_marker={marker}",
    ]  # fmt: skip
    if os.path.isdir("/usr/local/go"):
        # Positional arguments, never a command string: the mount, then exec the playbook.
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount -t tmpfs hopbench-hidden /usr/local/go && exec "$@"', "sh", *argv]  # fmt: skip
    env = {**os.environ, "PATH": path, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env.pop("GOROOT", None)
    try:
        proc = subprocess.run(argv, cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False, timeout=900)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
        built = tmp_path / "bin" / "gobuild-probe"
        toolchain = Path("/var/cache/hopbench/toolchains") / f"go{pinned}.linux-{GOARCH}"
        assert (toolchain / ".hopbench-toolchain-sha256").read_text().strip() == defaults["gobuild_go_sha256"][GOARCH]
        info = subprocess.run(
            [str(toolchain / "bin/go"), "version", "-m", str(built)], capture_output=True, text=True, check=True
        )
        assert info.stdout.splitlines()[0].endswith(f": go{pinned}"), info.stdout
        # Built now by this very build (the marker in its link flags is in the cache key), not taken from the cache.
        (cached,) = Path("/var/cache/hopbench/bin").glob("gobuild-probe-*")
        assert cached.stat().st_mtime >= started
    finally:
        for stale in Path("/var/cache/hopbench/bin").glob("gobuild-probe-*"):
            stale.unlink()


def test_our_go_programs_pass_their_own_tests_with_the_pinned_toolchain(provisioned):
    """tools/crioshim (the adapter CRI-O runs gVisor's shim through) is built by the runsc role;
    its own Go tests (the bootstrap answer it turns into an address, and what it refuses) run
    with the toolchain the gobuild role installed. Standard library only: nothing is fetched."""
    defaults = yaml.safe_load((ROLES / "gobuild/defaults/main.yml").read_text())
    go = Path("/var/cache/hopbench/toolchains") / f"go{defaults['gobuild_go_version']}.linux-{GOARCH}" / "bin/go"
    tool = ANSIBLE.parent / "tools" / "crioshim"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOPROXY": "off", "CGO_ENABLED": "0"}
    env.update(GOCACHE="/var/cache/hopbench/go/build", GOPATH="/var/cache/hopbench/go/path")
    for argv in ([str(go), "vet", "./..."], [str(go), "test", "-count=1", "./..."]):
        proc = subprocess.run(argv, cwd=tool, env=env, capture_output=True, text=True, check=False, timeout=300)
        assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
    assert "ok" in proc.stdout


def _program_problem(where: str, value: object) -> str:
    """'' when `value` is an absolute path of an executable file, else what is wrong."""
    return crio_effective.program_problem(where, value if isinstance(value, str) else "")


def containerd_problems(dump: dict, where: str) -> list[str]:
    """Every CRI runtime of a `containerd config dump` (format 2 or 3) names its shim
    (runtime_path) and, for runc-type shims, its OCI runtime (options.BinaryName) by absolute
    path; the CNI plugin folders are absolute."""
    problems = []
    for plugin, body in dump.get("plugins", {}).items():
        runtimes = (body.get("containerd") or {}).get("runtimes") or {}
        for name, rt in runtimes.items():
            problems.append(
                _program_problem(f"{where} {plugin} runtimes.{name}.runtime_path", rt.get("runtime_path", ""))
            )
            options = rt.get("options") or {}
            if rt.get("runtime_type") == "io.containerd.runc.v2":
                problems.append(
                    _program_problem(
                        f"{where} {plugin} runtimes.{name}.options.BinaryName", options.get("BinaryName", "")
                    )
                )
        cni = body.get("cni") or {}
        for d in [*cni.get("bin_dirs", []), *([cni["bin_dir"]] if cni.get("bin_dir") else [])]:
            if not os.path.isabs(d):
                problems.append(f"{where} {plugin} cni bin dir {d!r} is not absolute")
    return [p for p in problems if p]


def test_every_daemon_configuration_names_its_programs_by_absolute_path(provisioned):
    """What each daemon itself reports it will run: CRI-O's `crio status config` (its built-in
    handlers included), each containerd's `config dump`, dockerd's runtimes from the Engine API."""
    problems: list[str] = []
    for stack in available("crio"):
        binary, conf, dropin = crio_command(stack)
        seen = crio_status_config(binary, conf, dropin, stack.cri_endpoint.removeprefix("unix://"))
        problems += [f"{stack.name}: {p}" for p in crio_effective.check(seen, offered_handlers(stack))["problems"]]
    for stack in available("containerd"):
        (daemon,) = stack.daemons
        argv = Path(f"/proc/{daemon.pid()}/cmdline").read_bytes().decode().split("\0")
        conf = argv[argv.index("--config") + 1]
        out = subprocess.run(
            [daemon.exec, "--config", conf, "config", "dump"], capture_output=True, text=True, check=True
        )
        dump = tomllib.loads(out.stdout)
        problems += containerd_problems(dump, stack.name)
    for stack in available("docker"):
        problems += dockerd_problems(stack)
    assert problems == []


RUN = "levels: [cri]\niterations: 2\nwarmup: 0\nconcurrency: [1]\ncontrol: false\n"
EXEC_LINE = re.compile(r'^(\d+)\s+execve\("((?:[^"\\]|\\.)*)", .* = 0$')
# A program re-executing itself (runc init through /proc/self/exe or a sealed memfd copy) is the
# program already traced, not a new one.
SELF_EXEC = re.compile(r"^/proc/(self|\d+)/(exe|fd/\d+)$|^/memfd:")


def role_packages() -> set[str]:
    """The Debian packages the roles install by name: every `ansible.builtin.apt` task's `name`,
    with role variables resolved from the roles' defaults and group_vars (version pins dropped)."""
    variables: dict[str, object] = {}
    for path in [*sorted(ROLES.glob("*/defaults/main.yml")), *sorted((ANSIBLE / "group_vars/all").glob("*.yml"))]:
        variables.update(yaml.safe_load(path.read_text()) or {})
    names: set[str] = set()

    def add(value: object) -> None:
        if isinstance(value, list):
            for v in value:
                add(v)
        elif isinstance(value, str):
            m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}.*", value)
            if m:
                add(variables.get(m.group(1), ""))
            elif "{{" not in value and value:
                names.add(value.split("=")[0])

    for path in sorted(ROLES.glob("*/tasks/*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            apt = task.get("ansible.builtin.apt")
            if isinstance(apt, dict) and apt.get("state", "present") == "present":
                add(apt.get("name"))
    return names


def _tasks(items: list) -> list[dict]:
    out = []
    for item in items:
        if isinstance(item, dict):
            out.append(item)
            for key in ("block", "rescue", "always"):
                out += _tasks(item.get(key) or [])
    return out


def essential_packages() -> set[str]:
    """Debian's Essential: yes packages, on every Debian system by definition."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Essential}\\n"], capture_output=True, text=True, check=True
    )
    return {line.split()[0] for line in out.stdout.splitlines() if line.endswith(" yes")}


def package_of(path: str) -> str:
    """The Debian package that owns `path` (merged /usr: /bin/x is /usr/bin/x), or ''."""
    for candidate in dict.fromkeys([path, os.path.realpath(path), path.replace("/usr/", "/", 1), "/usr" + path]):
        out = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            return out.stdout.split(":", 1)[0].split(",")[0].strip()
    return ""


def image_paths() -> set[str]:
    """Every file path inside the offline images' layers: what a container executes from its own
    rootfs (pause, the workload's busybox) is the image's, not the node's."""
    import tarfile

    found: set[str] = set()
    for archive in IMAGES.glob("*.oci.tar"):
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if not member.isfile() or not member.name.startswith("blobs/"):
                    continue
                blob = outer.extractfile(member)
                assert blob is not None
                try:
                    with tarfile.open(fileobj=blob) as layer:
                        found |= {"/" + m.name.lstrip("./") for m in layer.getmembers()}
                except tarfile.ReadError:
                    continue  # a config or manifest blob
    return found


def test_every_program_the_daemons_execute_comes_from_a_role(provisioned, tmp_path):
    """strace follows every daemon of every provisioned stack instance (dockerd's containerd too)
    and all they start, while one run takes two lifecycles of each: each program executed on the
    node must lie under hopbench's own folders, or belong to a Debian package a role installs
    (or to Debian's essential set, on every system)."""
    if shutil.which("strace") is None:
        pytest.fail("strace is missing: scripts/setup installs it for this test")
    pids = []
    targets = []
    for stack in stacks.discover():
        if stack.unavailable:
            continue
        targets.append(f"{stack.name}/runc")
        pids += [d.pid() for d in stack.daemons]
        child = stack.extra.get("containerd_level") or {}
        if child.get("pidfile") and child.get("exec"):
            pids.append(stacks.Daemon("containerd", str(child["exec"]), str(child["pidfile"])).pid())
    assert pids and all(pids), f"a daemon is not running: {pids}"
    trace = tmp_path / "exec.trace"
    argv = ["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-s", "256", "-o", str(trace)]
    for pid in pids:
        argv += ["-p", str(pid)]
    errors = tmp_path / "strace.err"
    with errors.open("w") as err:
        tracer = subprocess.Popen(argv, stderr=err)
    try:
        time.sleep(2)  # attached to every thread of every daemon
        assert tracer.poll() is None, errors.read_text()
        body = f"targets: [{', '.join(targets)}]\n" + RUN
        run_scenario(tmp_path, "execs", body)
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches; the daemons run on untouched
        tracer.wait(timeout=60)
    executed: dict[str, str] = {}
    for line in trace.read_text(errors="replace").splitlines():
        m = EXEC_LINE.match(line)
        if m and not SELF_EXEC.match(m.group(2)):
            executed.setdefault(m.group(2), line[:300])
    assert executed, "the trace saw no program executed: strace did not follow the daemons"
    in_images = image_paths()
    allowed = role_packages() | essential_packages()
    where: dict[str, str] = {}
    problems = []
    for path in sorted(executed):
        if path.startswith(HOPBENCH_PREFIXES):
            where[path] = "hopbench"
            continue
        if path in in_images and not os.path.exists(path):
            where[path] = "image"
            continue
        owner = package_of(path)
        where[path] = owner or "?"
        if path in in_images:
            where[path] = "image"  # the container's own program at a path the node also has
        elif not owner:
            problems.append(f"{path}: no role installed it and no Debian package owns it ({executed[path]})")
        elif owner not in allowed:
            problems.append(f"{path}: from Debian package {owner}, which no role installs ({executed[path]})")
    (tmp_path / "executed.json").write_text(json.dumps(where, indent=1))
    print(json.dumps(where, indent=1))  # the list, for the engineer reading -s output
    assert problems == []


# dockerd defines these runtimes itself, naming runc by bare name, and refuses a configuration
# that redefines them; hopbench never uses them (its default runtime is the wrapper, by path), and
# the role's PATH for dockerd resolves the name to the wrapper. The check resolves them on the
# daemon's own PATH instead of failing on the name.
DOCKERD_RESERVED = ("runc", "io.containerd.runc.v2", "io.containerd.runtime.v1.linux")


def dockerd_problems(stack: stacks.Stack) -> list[str]:
    from bench.node.levels.engine import EngineClient

    client = EngineClient(str(stack.extra["docker_endpoint"]), 30)
    try:
        info = client.request("GET", "/info")
    finally:
        client.close()
    dockerd = next(d for d in stack.daemons if d.name == "dockerd")
    daemon_path = environ_of(dockerd.pid() or 0).get("PATH", "")
    problems = []
    for name, runtime in info["Runtimes"].items():
        path = runtime.get("path", "")
        where = f"{stack.name} dockerd runtime {name}"
        if name in DOCKERD_RESERVED and name != info["DefaultRuntime"] and path and not os.path.isabs(path):
            found = shutil.which(path, path=daemon_path) or ""
            if not found.startswith(HOPBENCH_PREFIXES):
                problems.append(
                    f"{where}: {path!r} resolves on dockerd's PATH to {found or 'nothing'}, not a role's program"
                )
            continue
        problems.append(_program_problem(f"{where} path", path))
    return [p for p in problems if p]
