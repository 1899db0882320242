"""The local transport: the agent as a child process of this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from bench.controller.transport import Transport, TransportError, parse_line
from bench.messages import Event, Job


class LocalTransport(Transport):
    def __init__(self, node: str = "local") -> None:
        self.node = node
        self.proc: subprocess.Popen[str] | None = None

    def run_agent(self, job: Job) -> Iterator[Event]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Own session: a Ctrl-C on the terminal reaches the runner, which forwards one
        # SIGTERM, instead of hitting the agent in the middle of a clean-up.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.node"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        if self.proc.stdin is None or self.proc.stdout is None:
            raise TransportError("agent started without pipes")
        self.proc.stdin.write(job.encode() + "\n")
        self.proc.stdin.close()
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            yield parse_line(line, self.node)
        rc = self.proc.wait()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        for pipe in (self.proc.stdout, self.proc.stderr):  # closed here, not left to the collector
            if pipe is not None:
                pipe.close()
        if rc not in (0, 130):
            raise TransportError(f"agent on {self.node} exited with {rc}: {stderr.strip()[-2000:]}")

    def interrupt(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
