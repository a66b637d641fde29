"""The MMRB training recipe (paper §3.4 and §4.2, as ``mmrb-spec.md`` §2 reads them).

``L = 0.5 L_gan + 3 L_local + 8 L1 + 0.02 L_fm + 10 L_id`` plus the pyramid L1 on the
decoder's RGB heads (weight 1, U10):

* global GAN: non-saturating logistic on facefix's StyleGAN2 discriminator, lazy R1
  (10 every 16); FreezeD keeps its first blocks fixed when it starts from a pretrained
  discriminator (GPEN's), and is off otherwise;
* local GAN: GFP-GAN's eye and mouth discriminators (binary cross-entropy), without
  their Gram style term, which MMRB does not have;
* feature matching: MSE between VGG features (every block's last conv, weight 1 each,
  summed: U12);
* face preserving: L1 between identity embeddings (ArcFace, the paper's, or SFace).

Learning rates per part (paper): codec 2e-3, the StyleGAN2 prior 2e-4, the noise
branches (the concat strengths) 2e-3, local discriminators 2e-3, global discriminator
2e-5. Those assume a pretrained prior and discriminator; from scratch every part
defaults to 2e-4 (GFP-GAN's 2e-3 diverges from scratch). The rates fall by half at
5/7 and 6/7 of the run (the paper's "piece-wise attenuation"; U15).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefix.checkpoints import load_into
from facefix.errors import FacefixError
from facefix.training.adversarial import update_components, update_discriminator
from facefix.training.components import component_boxes, detect_landmarks, flip_boxes
from facefix.training.discriminators import StyleGAN2Discriminator
from facefix.training.losses import (
    LossTerms,
    FacialComponentLoss,
    PerceptualLoss,
    build_identity,
    build_vgg,
    gan_loss,
    l1_loss,
    pyramid_l1,
)
from facefix.training.trainer import TrainConfig
from facefix.weights import WeightsResolver
from facefix_plugins.mmrb.arch import MMRBNet
from facefix_plugins.mmrb.network import gpen_discriminator_state, load_additive_prior, load_gpen

#: every block's last conv, before its activation (U12), per VGG
FEATURE_LAYERS = {"vgg19": ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4"),
                  "vgg16": ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")}

DEFAULTS: dict[str, Any] = {
    "style_dim": 512,
    "num_mlp": 8,
    "channel_multiplier": 2,
    "width": 1.0,
    "mmrb": True,
    "d_width": 1.0,
    # None: the paper's rate with a pretrained prior / discriminator, 2e-4 from scratch
    "lr_codec": None,
    "lr_prior": 2e-4,
    "lr_noise": None,
    "lr_local_d": None,
    "lr_global_d": None,
    "milestones": [5 / 7, 6 / 7],  # fractions of the run
    "gamma": 0.5,
    "pixel_weight": 8.0,
    "pyramid_weight": 1.0,
    "gan": True,
    "gan_weight": 0.5,
    "r1_weight": 10.0,
    "r1_every": 16,
    "local_d": True,
    "local_weight": 3.0,
    "feature_matching": True,
    "fm_weight": 0.02,
    "perceptual_net": "vgg19",
    "identity": True,
    "identity_weight": 10.0,
    "identity_net": "arcface",
    "freeze_d_blocks": None,  # None: log2(size) - 4 with a pretrained discriminator, else 0
    "pretrained_prior": None,
    "pretrained_discriminator": None,
    "model_dir": None,
}


class MMRBRecipe:
    name = "mmrb"
    default_preset = "mmrb"
    needs_masks = False
    defaults = DEFAULTS

    def __init__(self, card: Any = None) -> None:
        self.options: dict[str, Any] = dict(DEFAULTS)
        self.boxes: torch.Tensor | None = None
        self.features: PerceptualLoss | None = None
        self.identity = None
        self.d_trainable: list[torch.nn.Parameter] | None = None

    # -- building --------------------------------------------------------------------

    def architecture(self, config: TrainConfig) -> dict[str, Any]:
        o = self.options
        return dict(out_size=config.size, style_dim=int(o["style_dim"]), num_mlp=int(o["num_mlp"]),
                    channel_multiplier=float(o["channel_multiplier"]), narrow=float(o["width"]), mmrb=bool(o["mmrb"]),
                    lr_mlp=0.01)

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        self.options = {**DEFAULTS, **config.recipe}
        o = self.options
        try:
            generator = MMRBNet(**self.architecture(config))
        except ValueError as error:
            raise FacefixError(f"mmrb: {error}") from None
        if o["pretrained_prior"]:
            self._load_prior(generator, Path(o["pretrained_prior"]))
        models: dict[str, torch.nn.Module] = {"generator": generator.to(device)}
        resolver = WeightsResolver(model_dir=Path(o["model_dir"]) if o["model_dir"] else None)
        if o["gan"]:
            discriminator = StyleGAN2Discriminator(config.size, channel_multiplier=o["channel_multiplier"],
                                                   narrow=float(o["d_width"]))
            self.d_trainable = self._freeze_d(discriminator, config.size)
            models["discriminator"] = discriminator.to(device)
        if o["local_d"]:
            models["components"] = FacialComponentLoss().to(device)
        if o["feature_matching"]:
            layers = FEATURE_LAYERS[o["perceptual_net"]]
            vgg = build_vgg(resolver, o["perceptual_net"], layers, hint="--no-feature-matching")
            self.features = PerceptualLoss({name: 1.0 for name in layers}, criterion="l2", features=vgg).to(device)
        if o["identity"]:
            self.identity = build_identity(resolver, net=o["identity_net"]).to(device)
        return models

    def _load_prior(self, generator: MMRBNet, path: Path) -> None:
        """GPEN-BFR's encoder convs and concat prior, or an additive StyleGAN2 widened."""
        from facefix.checkpoints import read_checkpoint

        keys = read_checkpoint(path, mmap=True).state
        if any(key.startswith("generator.style.") for key in keys):
            load_gpen(generator, path)
        else:
            load_additive_prior(generator, path)

    def _freeze_d(self, discriminator: StyleGAN2Discriminator, size: int) -> list[torch.nn.Parameter]:
        """FreezeD (§2.4): load the pretrained discriminator and freeze its first blocks;
        returns the parameters the discriminator updates train."""
        o = self.options
        pretrained = o["pretrained_discriminator"]
        blocks = o["freeze_d_blocks"]
        if pretrained:
            state = gpen_discriminator_state(pretrained)
            load_into(discriminator, state, pretrained, "not a StyleGAN2 / GPEN discriminator of this size and width")
            blocks = max(0, int(math.log2(size)) - 4) if blocks is None else int(blocks)
        elif blocks:
            print("facefix: FreezeD needs a pretrained discriminator (--pretrained-discriminator); training all of it",
                  file=sys.stderr)
            blocks = 0
        frozen = {id(p) for block in list(discriminator.conv_body)[: blocks or 0] for p in block.parameters()}
        for parameter in discriminator.parameters():
            parameter.requires_grad_(False)
        self.frozen_d_blocks = blocks or 0
        return [p for p in discriminator.parameters() if id(p) not in frozen]

    def setup(self, trainer) -> None:
        if self.options["local_d"]:
            model_dir = Path(self.options["model_dir"]) if self.options["model_dir"] else None
            landmarks = detect_landmarks(trainer.train_set.files, trainer.config.size, model_dir=model_dir,
                                         quiet=trainer.quiet)
            self.boxes = torch.from_numpy(np.stack([component_boxes(p) for p in landmarks]))

    def lr(self, key: str, pretrained_value: float) -> float:
        value = self.options[key]
        if value is not None:
            return float(value)
        pretrained = self.options["pretrained_discriminator" if key == "lr_global_d" else "pretrained_prior"]
        return pretrained_value if pretrained else 2e-4

    def build_optimizers(self, models, config):
        o = self.options
        generator = models["generator"]
        groups: dict[str, list[torch.nn.Parameter]] = {"codec": [], "prior": [], "noise": []}
        for name, parameter in generator.named_parameters():
            part = "noise" if name.endswith("noise_weight") else "prior" if name.startswith("prior.") else "codec"
            groups[part].append(parameter)
        optimizers = {"generator": torch.optim.Adam([
            {"params": groups["codec"], "lr": self.lr("lr_codec", 2e-3)},
            {"params": groups["prior"], "lr": float(o["lr_prior"])},
            {"params": groups["noise"], "lr": self.lr("lr_noise", 2e-3)},
        ], betas=(0.9, 0.99))}
        if "discriminator" in models:
            ratio = o["r1_every"] / (o["r1_every"] + 1)  # lazy R1, as StyleGAN2
            optimizers["discriminator"] = torch.optim.Adam(self.d_trainable, lr=self.lr("lr_global_d", 2e-5) * ratio,
                                                           betas=(0.9**ratio, 0.99**ratio))
        if "components" in models:
            optimizers["components"] = torch.optim.Adam(models["components"].parameters(),
                                                        lr=self.lr("lr_local_d", 2e-3), betas=(0.9, 0.99))
        return optimizers

    def lr_schedule(self) -> dict[str, Any]:
        return {"kind": "multistep", "milestones": list(self.options["milestones"]), "gamma": float(self.options["gamma"])}

    # -- one step --------------------------------------------------------------------

    def _boxes(self, batch: dict[str, torch.Tensor], size: int) -> torch.Tensor:
        boxes = self.boxes[batch["index"].cpu()].to(batch["hq"].device)
        return flip_boxes(boxes, size, batch["flipped"].to(boxes.device))

    def train_step(self, batch, models, step) -> None:
        o = self.options
        generator = models["generator"]
        size = batch["hq"].shape[-1]
        discriminator = models.get("discriminator")
        components = models.get("components")

        def fake(micro):
            return generator(micro["lq"], return_rgb=False)[0]

        if discriminator is not None:
            update_discriminator(step, discriminator, fake, r1_weight=o["r1_weight"], r1_every=o["r1_every"],
                                 trainable=self.d_trainable)
        if components is not None:
            update_components(step, components, fake, lambda micro: self._boxes(micro, size))

        def g_loss(micro):
            output, rgbs = generator(micro["lq"], return_rgb=True)
            target = micro["hq"]
            terms = LossTerms()
            terms.add("l1", l1_loss(output, target), o["pixel_weight"])
            if o["pyramid_weight"]:
                terms.add("pyramid", pyramid_l1(rgbs, target), o["pyramid_weight"])
            if discriminator is not None:
                terms.add("gan", gan_loss(discriminator(output), True, "softplus", for_discriminator=False),
                          o["gan_weight"])
            if components is not None:
                terms.add("local_gan", components.generator_loss(output, target, self._boxes(micro, size))[0],
                          o["local_weight"])
            if self.features is not None:
                terms.add("feature_matching", self.features(output, target)[0], o["fm_weight"])
            if self.identity is not None:
                terms.add("identity", self.identity(output, target), o["identity_weight"])
            return terms.result()

        step.update("generator", g_loss)

    # -- validation and export -------------------------------------------------------

    def generate(self, generator, batch):
        return generator(batch["lq"], return_rgb=False)[0]

    def export(self, generator, config) -> dict[str, Any]:
        return {"params_ema": generator.state_dict(), "config": dict(generator.config)}
