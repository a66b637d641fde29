"""From a network card and a weights file to a working component.

:func:`load_network` takes any file of the card's network through
:mod:`facefix.checkpoints` (canonicalise → stored or inferred config → meta-device
layout check → strict load), together with the networks the file carries for other
cards (PSFR-GAN's parser). :func:`build_component` is the factory behind every
card-generated component: it resolves the variant's weights (or ``--weights``), loads
them, and hands the network to the card's component factory, a
:class:`~facefix.restorers.TorchRestorer` by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from facefix.checkpoints import Checkpoint, build_strict, read_checkpoint
from facefix.components import ComponentContext
from facefix.errors import ComponentError, WeightsError
from facefix.restorers import TorchRestorer


@dataclass
class LoadedNetwork:
    """A card's network, strictly loaded, with the config it was built from."""

    card: Any  # facefix.cards.NetworkCard
    module: nn.Module
    config: dict[str, Any]
    checkpoint: Checkpoint
    companions: dict[str, LoadedNetwork] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.checkpoint.path


def find_state(card: Any, checkpoint: Checkpoint) -> Checkpoint | None:
    """The checkpoint itself if the card recognises it, else one stored inside it, else None."""
    for candidate in (checkpoint, *checkpoint.nested()):
        if candidate.state and card.recognise(candidate.state):
            return candidate
    return None


def recognises(card: Any, checkpoint: Checkpoint) -> bool:
    """True when ``checkpoint`` itself (not one it carries) holds the card's network."""
    return bool(checkpoint.state) and bool(card.recognise(checkpoint.state))


def config_of(card: Any, checkpoint: Checkpoint) -> dict[str, Any]:
    """The stored config when the card accepts it, else the one its keys and shapes imply."""
    stored = checkpoint.config
    if stored is not None and (card.accepts_config is None or card.accepts_config(stored)):
        return dict(stored)
    if card.infer_config is None:
        raise WeightsError(f"{checkpoint.path}: a {card.title} checkpoint must store its 'config' beside the weights")
    try:
        return dict(card.infer_config(checkpoint.state))
    except WeightsError as error:
        raise WeightsError(f"{checkpoint.path}: {error}") from None


def network_from(card: Any, checkpoint: Checkpoint) -> LoadedNetwork:
    found = find_state(card, checkpoint)
    if found is None:
        rule = card.recognise.describe() if hasattr(card.recognise, "describe") else "its keys are another network's"
        raise WeightsError(f"{checkpoint.path}: not a {card.title} checkpoint ({rule})")
    config = config_of(card, found)
    module = build_strict(lambda: card.architecture(config), found.state, found.path, f"does not fit the {card.title}")
    companions = {}
    for key, companion in card.carries.items():
        inner = found.raw.get(key)
        if inner is not None:
            companions[key] = network_from(companion, next(c for c in found.nested() if c.raw is inner))
    return LoadedNetwork(card=card, module=module, config=config, checkpoint=found, companions=companions)


def load_network(card: Any, path: Path | str) -> LoadedNetwork:
    """The card's network from any file of it (or one that carries it), loaded strictly."""
    return network_from(card, read_checkpoint(path))


def default_restorer(network: LoadedNetwork, context: ComponentContext, name: str) -> TorchRestorer:
    card = network.card
    return TorchRestorer(
        network.module,
        input_size=card.size(network.config, "input"),
        output_size=card.size(network.config, "output"),
        normalization=card.normalization,
        device=context.device,
        name=name,
        weights=network.path,
        precisions=card.precisions,
        exportable=card.exportable,
    )


def build_component(card: Any, variant: Any, name: str, context: ComponentContext) -> Any:
    """The component ``name`` of a card variant: its weights (or ``--weights``), loaded, wrapped.

    A card without released weights (``variant`` None) runs from ``--weights`` alone."""
    if variant is None and context.weights_path is None:
        how = f" (one from `facefix train {card.train_command}`)" if card.train_command else ""
        raise ComponentError(f"{card.kind} {name}: no weights are released for it: pass --weights FILE{how}")
    path = context.weights(variant.weights_name) if variant is not None else context.weights_path
    network = load_network(card, path)
    make = card.component if card.component is not None else default_restorer
    return make(network, context, name)
