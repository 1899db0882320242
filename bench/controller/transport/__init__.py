"""Transports: the strict cut-off between the runner and I/O to a node.

A transport starts the node agent with a job and yields the agent's events one by one as
they arrive. `local` runs the agent as a child process on this machine (the embedded
default); an SSH transport (paramiko, in its own module) does the same on a lab node.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

from bench.codec import MessageError
from bench.errors import ComponentError
from bench.messages import Event, Job, Warning, decode_event


class TransportError(ComponentError):
    """The node could not be reached, or its agent failed to run."""


def parse_line(line: str, node: str) -> Event:
    """One agent line as its event; a line that is not one becomes a warning that quotes it."""
    try:
        return decode_event(line)
    except MessageError as exc:
        return Warning(message=f"agent on {node} sent a line that is not an event: {exc}")


class Transport(abc.ABC):
    node: str

    @abc.abstractmethod
    def run_agent(self, job: Job) -> Iterator[Event]:
        """Start the agent with `job`, yield its events; raise TransportError if it fails to run."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Ask the agent to stop and clean up (it keeps streaming until done)."""
