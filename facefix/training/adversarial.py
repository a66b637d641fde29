"""The discriminator updates GAN recipes share (GFP-GAN, MMRB): a StyleGAN2
discriminator with lazy R1, and the facial-component discriminators.

Each takes ``fake(micro)``, the generator's output for a micro-batch (called under
``no_grad``), and runs one optimiser update through :class:`StepContext`. The
discriminator's parameters require grad only during its own update: the generator's
update must not accumulate gradients into it.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from facefix.training.losses import gan_loss, r1_penalty

Fake = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _trainable(module: nn.Module, parameters: Iterable[nn.Parameter] | None, flag: bool) -> None:
    for parameter in (module.parameters() if parameters is None else parameters):
        parameter.requires_grad_(flag)


def update_discriminator(step, discriminator: nn.Module, fake: Fake, *, r1_weight: float, r1_every: int,
                         trainable: list[nn.Parameter] | None = None, name: str = "discriminator") -> None:
    """Non-saturating logistic loss on fakes and reals, then (every ``r1_every``
    iterations) the R1 penalty, scaled as StyleGAN2's lazy regularisation does.

    ``trainable``: the parameters this update trains (FreezeD keeps the others frozen).
    """
    _trainable(discriminator, trainable, True)

    def d_loss(micro):
        with torch.no_grad():
            fakes = fake(micro)
        fake_loss = gan_loss(discriminator(fakes.detach()), False, "softplus", for_discriminator=True)
        real_loss = gan_loss(discriminator(micro["hq"]), True, "softplus", for_discriminator=True)
        return fake_loss + real_loss, {"d": float((fake_loss + real_loss).detach())}

    step.update(name, d_loss)
    if r1_weight and step.iteration % r1_every == 0:
        def r1(micro):
            real = micro["hq"].detach().requires_grad_(True)
            penalty = r1_penalty(discriminator(real), real)
            return r1_weight / 2 * penalty * r1_every, {"r1": float(penalty.detach())}

        step.update(name, r1)
    _trainable(discriminator, trainable, False)


def update_components(step, components: nn.Module, fake: Fake, boxes: Callable[[dict], torch.Tensor],
                      name: str = "components") -> None:
    """The eye and mouth discriminators of a :class:`~facefix.training.losses.FacialComponentLoss`."""
    _trainable(components, None, True)

    def component_d_loss(micro):
        with torch.no_grad():
            fakes = fake(micro)
        loss = components.discriminator_loss(fakes.detach(), micro["hq"], boxes(micro))
        return loss, {"d_components": float(loss.detach())}

    step.update(name, component_d_loss)
    _trainable(components, None, False)
