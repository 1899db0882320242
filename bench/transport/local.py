"""The local transport: the agent as a child process of this machine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from bench.transport import Transport, TransportError


class LocalTransport(Transport):
    def __init__(self, node: str = "local") -> None:
        self.node = node
        self.proc: subprocess.Popen[str] | None = None

    def run_agent(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Own session: a Ctrl-C on the terminal reaches the runner, which forwards one
        # SIGTERM, instead of hitting the agent in the middle of a clean-up.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.agent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        if self.proc.stdin is None or self.proc.stdout is None:
            raise TransportError("agent started without pipes")
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.close()
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield {"event": "warning", "message": f"agent printed a line that is not JSON: {line[:200]}"}
        rc = self.proc.wait()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        if rc not in (0, 130):
            raise TransportError(f"agent on {self.node} exited with {rc}: {stderr.strip()[-2000:]}")

    def interrupt(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
