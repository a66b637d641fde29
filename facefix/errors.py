"""Errors that reach the user as one line: each names the file or thing and the reason."""

from __future__ import annotations

from pathlib import Path


class FacefixError(Exception):
    """Base class: ``str(error)`` is the complete one-line message shown to the user."""


class InputError(FacefixError):
    """An input file can't be used (unreadable, truncated, not an image, too large...)."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class WeightsError(FacefixError):
    """A weights file is missing, corrupt, of the wrong layout, or unsafe to load."""


class ComponentError(FacefixError):
    """A component name is unknown, or a component can't be built or run."""


_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so that a message stays one line even
    when it names a file whose name holds a newline."""
    return text.translate(_CONTROL)
