"""What every facefix command shares: the one-line error exit."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """``Error: <one line>`` on stderr, exit status 1."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)
