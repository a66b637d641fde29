"""The hooks a facefix plugin can implement.

Each ``register_*`` hook receives a ``register`` callable; call it once per component::

    register(name, factory, description="...", weights=("registry-name",))

``factory(context: ComponentContext)`` builds the component when a pipeline needs it.
See docs/plugins.md for a complete plugin.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("facefix")
hookimpl = pluggy.HookimplMarker("facefix")


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
def register_weights(register):
    """Register weights files: ``register(WeightsEntry(...))`` for each checkpoint."""


@hookspec
def register_commands(cli, train, export):
    """Add click commands: ``cli`` is the root group; ``train`` and ``export`` are the
    groups under which each network adds its own subcommand."""
