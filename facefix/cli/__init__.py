"""The ``facefix`` command line: the root group, the core commands, and what plugins add.

One module per command beside this one. ``facefix train NAME`` and ``facefix export
NAME`` are generated from the registered network cards; plugins add more commands
through ``register_commands``. Importing the CLI loads no torch: commands import what
they need when they run.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from facefix import __version__, plugins
from facefix.cards import NetworkCard
from facefix.cli.cache import cache_group
from facefix.cli.degrade import degrade_command
from facefix.cli.eval import eval_command
from facefix.cli.export import export_command
from facefix.cli.listing import plugins_command
from facefix.cli.restore import restore_command
from facefix.cli.train import train_command
from facefix.cli.upscale import upscale_command
from facefix.cli.video import video_command
from facefix.cli.weights import weights_group


class PluginGroup(click.Group):
    """A root group that lets plugins add their commands before anything is run."""

    _plugins_added: set[str]

    def _add_plugin_commands(self) -> None:
        if not hasattr(self, "_plugins_added"):
            self._plugins_added = set()
        plugins.load_plugins()
        impls = plugins.pm.hook.register_commands.get_hookimpls()
        pending = [impl for impl in impls if impl.plugin_name not in self._plugins_added]
        if not pending:
            return
        for impl in pending:
            self._plugins_added.add(impl.plugin_name)
            arguments = {"cli": GuardedGroup(self, impl.plugin_name, lambda: set()),
                         "train": GuardedGroup(train_group, impl.plugin_name, lambda: _card_commands(_trainable)),
                         "export": GuardedGroup(export_group, impl.plugin_name, lambda: _card_commands(_exportable))}
            try:
                impl.function(*[arguments[name] for name in impl.argnames])
            except (Exception, SystemExit) as error:
                plugins.warn(f"plugin {impl.plugin_name!r} failed to add commands: {type(error).__name__}: {error}")

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, name)


class GuardedGroup:
    """The view of a command group a plugin's ``register_commands`` gets: it adds commands,
    but never under a name already taken (a built-in command such as ``restore``, one a
    card generates such as ``train compact``, or an earlier plugin's): those stay, and the
    plugin's is ignored with one warning naming it."""

    def __init__(self, group: click.Group, plugin: str, reserved: Callable[[], set[str]]):
        self._group, self._plugin, self._reserved = group, plugin, reserved

    def add_command(self, command: click.Command, name: str | None = None) -> None:
        name = name or command.name
        if name in self._group.commands or name in self._reserved():
            where = f"{self._group.name} {name}" if self._group.name not in (None, "cli") else name
            plugins.warn(f"command {where!r} from plugin {self._plugin!r} ignored: facefix already has that command")
            return
        self._group.add_command(command, name)

    def _decorator(self, make: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:  # @group.command without parentheses
            command = make()(args[0])
            self.add_command(command)
            return command

        def decorate(function: Callable[..., Any]) -> click.Command:
            command = make(*args, **kwargs)(function)
            self.add_command(command)
            return command

        return decorate

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorator(click.command, args, kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorator(click.group, args, kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._group, attribute)


def _card_commands(make: Callable[[NetworkCard], click.Command | None]) -> set[str]:
    """The names of the commands the registered cards generate in ``train`` or ``export``."""
    return {command.name for card in plugins.cards() if (command := make(card)) is not None}


class NetworkCommands(click.Group):
    """``facefix train`` and ``facefix export``: a subcommand per network card that has
    one (generated anew on each look-up, so cards registered at run time appear), plus
    whatever plugins add to the group themselves."""

    def __init__(self, *args, make: Callable[[NetworkCard], click.Command | None], **kwargs):
        super().__init__(*args, **kwargs)
        self._make = make
        self._generated: set[str] = set()

    def _generate(self) -> None:
        for name in self._generated:
            self.commands.pop(name, None)
        self._generated = set()
        for card in plugins.cards():
            command = self._make(card)
            if command is not None and command.name not in self.commands:
                self.add_command(command)
                self._generated.add(command.name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._generate()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._generate()
        return super().get_command(ctx, name)


def _trainable(card: NetworkCard) -> click.Command | None:
    return train_command(card) if card.training is not None else None


def _exportable(card: NetworkCard) -> click.Command | None:
    return export_command(card) if card.kind in ("restorer", "upsampler") and card.exportable else None


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facefix")
def cli() -> None:
    """Blind face restoration: detect, align, parse, restore and paste back faces."""


@cli.group(name="train", cls=NetworkCommands, make=_trainable)
def train_group() -> None:
    """Train a network (one subcommand per network that has a training recipe)."""


@cli.group(name="export", cls=NetworkCommands, make=_exportable)
def export_group() -> None:
    """Export a network to ONNX (one subcommand per exportable network)."""


for _command in (restore_command, video_command, eval_command, weights_group, degrade_command, plugins_command,
                 upscale_command, cache_group):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="facefix")
