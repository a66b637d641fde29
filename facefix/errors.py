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


class OutputError(FacefixError):
    """An output can't be written where asked (not a regular file there, one of the inputs,
    a folder that can't be made or written to)."""

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
# bidirectional overrides and isolates (U+202E makes "gpj.exe" read "exe.jpg"), and C1 controls
_CONTROL.update({code: f"\\u{code:04x}" for code in (*range(0x80, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F),
                                                    *range(0x2066, 0x206A))})


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so that a message stays one line even
    when it names a file whose name holds a newline."""
    return text.translate(_CONTROL)


def brief(error: BaseException | str, limit: int | None = None) -> str:
    """An exception's message (or any text) with its whitespace collapsed onto one line,
    cut at ``limit`` characters: what a library raises may span many lines (onnxruntime,
    ray and torch quote whole stack traces), and a facefix message quoting it stays one."""
    text = " ".join(str(error).split())
    return text if limit is None else text[:limit]


def error_text(error: BaseException, path: Path | str | None = None) -> str:
    """One line for a failed file: facefix's own errors carry their message, others get
    their type; ``path`` goes first unless the error names its file already."""
    if isinstance(error, InputError):
        return str(error)
    text = brief(error) if isinstance(error, FacefixError) else brief(f"{type(error).__name__}: {error}")
    return f"{path}: {text}" if path is not None else text


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 face``, ``2 faces``: summaries read as sentences."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
