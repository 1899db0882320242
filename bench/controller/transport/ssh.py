"""The SSH transport (paramiko): the agent on a lab node, uploaded over SFTP, events streamed back.

Host keys are verified against known_hosts; an unknown key is refused unless the inventory
allows new keys for that node (then it is saved), a changed key always. Key and SSH-agent
authentication; connect, banner and auth timeouts; keepalives. Where the SSH user is not
root the agent runs under `sudo -n` (no password prompt: a missing sudo rule fails at once).

The agent is the node's part of the `bench` package (`agent_files`: the shared modules and
bench/node, no controller code) as a zip archive (deterministic, so its SHA-256 names it):
uploaded to <agent_dir>/<sha256>.zip once and reused while its hash matches. The remote
command is a fixed argv of inventory values, each quoted; nothing from the scenario or the
job enters it (the job goes over stdin).

While the agent runs, the controller writes "stop" on its stdin to interrupt it. The job asks
the agent to stop when stdin ends (the session is gone) and to send a heartbeat; when no line
arrives for `idle_timeout_s` the connection is declared lost. The other way, the controller
writes "ping" every heartbeat: an agent that hears nothing for `idle_timeout_s` (the link died
without a FIN and sshd keeps the session) stops and cleans up by itself (its watchdog). After a loss, `check_left`
reconnects and asks a fresh agent what the run left on the node.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shlex
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko

from bench.controller.inventory import Node
from bench.controller.transport import Transport, TransportError, parse_line
from bench.messages import Done, Event, Heartbeat, Job, Left

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # bench/
# Shared modules the node does not need: the CLI and the stub generator (run at setup).
CONTROLLER_ONLY = ("cli.py", "protogen.py", "__main__.py")


def agent_files(package: Path = PACKAGE_DIR) -> list[Path]:
    """What a node needs of the package: the shared modules, bench/node and the containerd stubs."""
    shared = [p for p in package.glob("*.py") if p.name not in CONTROLLER_ONLY]
    below = [p for d in ("node", "_containerd") for p in (package / d).rglob("*.py")]
    return sorted(p for p in shared + below if "__pycache__" not in p.parts)


def agent_archive() -> tuple[bytes, str]:
    """The node's part of the bench package as a zip (fixed timestamps and order) and its SHA-256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in agent_files():
            info = zipfile.ZipInfo(str(Path("bench") / path.relative_to(PACKAGE_DIR)), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


class SSHTransport(Transport):
    def __init__(
        self,
        node: Node,
        connect_timeout_s: float = 15.0,
        keepalive_s: int = 5,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self.node = node.name
        self.conf = node
        self.connect_timeout = connect_timeout_s
        self.keepalive = keepalive_s
        self.idle_timeout = idle_timeout_s
        self.client: paramiko.SSHClient | None = None
        self.stdin: Any = None
        self.lock = threading.Lock()

    # --- connection ---------------------------------------------------------------------
    def known_hosts(self) -> Path:
        return Path(self.conf.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()

    def connect(self) -> paramiko.SSHClient:
        n = self.conf
        known = self.known_hosts()
        client = paramiko.SSHClient()
        if known.exists():
            client.load_host_keys(str(known))
        client.set_missing_host_key_policy(
            paramiko.AutoAddPolicy() if n.accept_new_host_key else paramiko.RejectPolicy()
        )
        where = f"[{n.host}]:{n.port}" if n.port != 22 else n.host
        try:
            client.connect(
                hostname=n.host,
                port=n.port,
                username=n.user,
                key_filename=n.key_file,
                allow_agent=True,
                look_for_keys=n.key_file is None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise TransportError(
                f"{n.name}: the host key of {where} has CHANGED (got {exc.key.get_name()} "
                f"{exc.key.get_fingerprint().hex()}, {known} has another): refusing to connect. If the node was "
                f"reinstalled, verify the new key and replace the old line in {known}."
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise TransportError(
                    f"{n.name}: unknown host key for {where} (not in {known}): refusing to connect. Verify the "
                    f"node's key and add it to {known} (ssh-keyscan -p {n.port} {n.host}, then compare the "
                    f"fingerprint), or allow new keys for this node only: hopbench_accept_new_host_key=true"
                ) from None
            raise TransportError(f"{n.name}: SSH to {where} as {n.user} failed: {exc}") from None
        except OSError as exc:
            client.close()
            raise TransportError(f"{n.name}: cannot reach {where}: {exc}") from None
        if n.accept_new_host_key:
            known.parent.mkdir(parents=True, exist_ok=True)
            client.save_host_keys(str(known))
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(self.keepalive)
        return client

    def _exec(self, client: paramiko.SSHClient, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
        _, out, err = client.exec_command(shlex.join(argv), timeout=timeout)
        rc = out.channel.recv_exit_status()
        return rc, out.read().decode(errors="replace"), err.read().decode(errors="replace")

    def _sudo(self) -> list[str]:
        return [] if self.conf.user == "root" else ["sudo", "-n"]

    def upload_agent(self, client: paramiko.SSHClient) -> str:
        """The remote path of the agent archive: uploaded unless the same archive is already there."""
        data, digest = agent_archive()
        remote = f"{self.conf.agent_dir}/{digest}.zip"
        rc, out, _ = self._exec(client, [*self._sudo(), "sha256sum", remote])
        if rc == 0 and out.split()[:1] == [digest]:
            return remote
        rc, _, err = self._exec(client, [*self._sudo(), "mkdir", "-p", "-m", "0755", self.conf.agent_dir])
        if rc != 0:
            raise TransportError(f"{self.node}: cannot create {self.conf.agent_dir}: {err.strip()[-500:]}")
        # A fresh private file of the SSH user (mktemp), then installed by root where it belongs.
        rc, out, err = self._exec(client, ["mktemp", "-t", "hopbench-agent.XXXXXXXXXX"])
        if rc != 0:
            raise TransportError(f"{self.node}: mktemp failed: {err.strip()[-500:]}")
        tmp = out.strip()
        with client.open_sftp() as sftp:
            sftp.putfo(io.BytesIO(data), tmp)
        rc, _, err = self._exec(client, [*self._sudo(), "install", "-m", "0644", tmp, remote])
        self._exec(client, ["rm", "-f", tmp])
        if rc != 0:
            raise TransportError(f"{self.node}: cannot install the agent at {remote}: {err.strip()[-500:]}")
        rc, out, _ = self._exec(client, [*self._sudo(), "sha256sum", remote])
        if rc != 0 or out.split()[:1] != [digest]:
            raise TransportError(f"{self.node}: the uploaded agent {remote} does not have SHA-256 {digest}")
        return remote

    # --- the agent -----------------------------------------------------------------------
    def run_agent(self, job: Job) -> Iterator[Event]:
        client = self.connect()
        self.client = client
        done_pinging = threading.Event()
        try:
            archive = self.upload_agent(client)
            argv = [
                *self._sudo(),
                "env",
                f"PYTHONPATH={archive}",
                "PYTHONUNBUFFERED=1",
                self.conf.python,
                "-m",
                "bench.node",
            ]
            stdin, stdout, stderr = client.exec_command(shlex.join(argv))
            stdout.channel.settimeout(self.idle_timeout)
            beat = max(1.0, self.idle_timeout / 6)
            job = dataclasses.replace(job, stop_on_eof=True, heartbeat_s=beat, watchdog_s=self.idle_timeout)
            if self.conf.lock_path:
                job = dataclasses.replace(job, lock_path=self.conf.lock_path)
            with self.lock:
                self.stdin = stdin
            stdin.write(job.encode() + "\n")
            stdin.flush()
            threading.Thread(
                target=self._ping, args=(beat, done_pinging), name=f"ping-{self.node}", daemon=True
            ).start()
            done = False
            while True:
                try:
                    raw = stdout.readline()
                except TimeoutError:
                    raise TransportError(
                        f"{self.node}: connection lost (no word from the agent for {self.idle_timeout:.0f} s)"
                    ) from None
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    raise TransportError(f"{self.node}: connection lost: {exc}") from None
                if not raw:
                    break
                line = raw.strip()
                if not line:
                    continue
                ev = parse_line(line, self.node)
                if isinstance(ev, Heartbeat):
                    continue
                done = done or isinstance(ev, Done)
                yield ev
            if not done:
                raise TransportError(
                    f"{self.node}: connection lost: the agent's output ended before it was done{_why(stdout, stderr)}"
                )
            rc = stdout.channel.recv_exit_status()
            if rc not in (0, 1, 130):
                message = stderr.read().decode(errors="replace").strip()[-2000:]
                raise TransportError(f"agent on {self.node} exited with {rc}: {message}")
        finally:
            done_pinging.set()
            with self.lock:
                self.stdin = None
            client.close()
            self.client = None

    def _say(self, line: str) -> None:
        with self.lock:
            if self.stdin is not None:
                try:
                    self.stdin.write(line + "\n")
                    self.stdin.flush()
                except (OSError, EOFError, paramiko.SSHException):
                    pass

    def _ping(self, every_s: float, done: threading.Event) -> None:
        """A line to the agent every `every_s` while it runs: its watchdog's proof the controller is there."""
        while not done.wait(every_s):
            self._say("ping")

    def interrupt(self) -> None:
        self._say("stop")

    def check_left(self, run_id: str, attempts: int = 10, wait_s: float = 3.0) -> dict[str, int]:
        """Reconnect and ask a fresh agent how many pods of `run_id` are still on the node.

        The node's agent cleans up by itself once its session is gone, which takes a moment:
        the count is asked again until it is zero or `attempts` are used; the last count is
        returned (non-zero: pods left behind)."""
        last, counts = "", None
        for i in range(attempts):
            if i:
                time.sleep(wait_s)
            try:
                job = Job(run_id=f"check-{run_id}", node=self.node, mode="check", check_run_id=run_id)
                for ev in self.run_agent(job):
                    if isinstance(ev, Left):
                        counts = dict(ev.pods)
                if counts is not None and not any(counts.values()):
                    return counts
                last = "the agent answered without a count" if counts is None else f"still left: {counts}"
            except TransportError as exc:
                last = str(exc)
        if counts is not None:
            return counts
        raise TransportError(f"{self.node}: could not check what the run left behind: {last}")


def _why(stdout: paramiko.ChannelFile, stderr: paramiko.ChannelFile) -> str:
    """The agent's exit status and the end of its stderr, when the session still says (else '')."""
    channel = stdout.channel
    if not channel.status_event.wait(5):
        return ""
    parts = [f" (exit status {channel.recv_exit_status()}"]
    try:
        channel.settimeout(5)
        tail = stderr.read().decode(errors="replace").strip()[-1500:]
    except (OSError, TimeoutError, paramiko.SSHException):
        tail = ""
    if tail:
        parts.append(f"; stderr: {tail}")
    return "".join(parts) + ")"
