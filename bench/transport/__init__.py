"""Transports: the strict cut-off between the runner and I/O to a node.

A transport starts the node agent with a job and yields the agent's events one by one as
they arrive. `local` runs the agent as a child process on this machine (the embedded
default); an SSH transport (paramiko, in its own module) does the same on a lab node.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from typing import Any


class TransportError(RuntimeError):
    pass


class Transport(abc.ABC):
    node: str

    @abc.abstractmethod
    def run_agent(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Start the agent with `job`, yield its events; raise TransportError if it fails to run."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Ask the agent to stop and clean up (it keeps streaming until done)."""
