"""The hooks a facefix plugin can implement.

A trained network is declared once, as a network card::

    register(NetworkCard(...))      # in register_networks

and facefix generates its components, weights entries and train/export commands.
Components that aren't trained networks (detectors built on other libraries,
blenders, ...) use the ``register_*`` component hooks; call ``register`` once each::

    register(name, factory, description="...", weights=("registry-name",), rank=None, aliases=())

``factory(context: ComponentContext)`` builds the component when a pipeline needs it;
``rank`` places it in the default choice (lower first). See docs/plugins.md.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("facefix")
hookimpl = pluggy.HookimplMarker("facefix")


@hookspec
def register_networks(register):
    """Register network cards: ``register(facefix.NetworkCard(...))`` for each trained network."""


@hookspec
def register_detectors(register):
    """Register face detectors: BGR image → faces with box, score and 5 landmarks."""


@hookspec
def register_parsers(register):
    """Register face parsers: aligned faces → CelebAMask-HQ 19-class label maps."""


@hookspec
def register_restorers(register):
    """Register face restorers: aligned faces in, restored faces out."""


@hookspec
def register_blenders(register):
    """Register paste-back blenders: put a restored face back into the image."""


@hookspec
def register_upsamplers(register):
    """Register background upsamplers: a whole image in, the same image ``scale`` times larger out."""


@hookspec
def register_weights(register):
    """Register weights files: ``register(WeightsEntry(...))`` for each checkpoint."""


@hookspec
def register_commands(cli, train, export):
    """Add click commands: ``cli`` is the root group; ``train`` and ``export`` are the
    groups under which each network adds its own subcommand."""
