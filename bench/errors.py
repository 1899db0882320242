"""One exception tree: every error hopbench raises on purpose derives from HopbenchError.

The CLI catches HopbenchError once and exits with status 2 and its message; anything else is
a bug and keeps its traceback. Subclasses also derive from the built-in class they replaced
(ValueError for bad input, RuntimeError for a failing component), so callers that caught
those still do.
"""

from __future__ import annotations


class HopbenchError(Exception):
    """A failure hopbench explains in one message (bad input, a component that does not answer)."""


class InputError(HopbenchError, ValueError):
    """Bad input: a file, field or value that cannot be used; the message names them."""


class ComponentError(HopbenchError, RuntimeError):
    """A runtime, daemon, tool or node that failed or does not answer."""
