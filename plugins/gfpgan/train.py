"""The GFP-GAN training recipe (paper + reference config numbers, anchors.md).

Losses: pixel L1, pyramid L1 on the U-Net's intermediate RGB outputs, perceptual +
Gram style on VGG19 conv features, non-saturating logistic GAN with lazy R1,
facial-component GAN + Gram style (left eye, right eye, mouth), identity (ArcFace).
Each can be switched off; VGG and ArcFace weights come from the weights registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefix.training.adversarial import update_components, update_discriminator
from facefix.training.components import component_boxes, detect_landmarks, flip_boxes
from facefix.training.discriminators import StyleGAN2Discriminator
from facefix.training.losses import (
    LossTerms,
    DEFAULT_LAYER_WEIGHTS,
    FacialComponentLoss,
    build_identity,
    build_perceptual,
    gan_loss,
    l1_loss,
    pyramid_l1,
)
from facefix.training.trainer import TrainConfig
from facefix_plugins.gfpgan.arch import GFPGANv1, GFPGANv1Clean


DEFAULTS: dict[str, Any] = {
    "arch": "clean",
    "width": 1.0,  # "narrow": scales every channel count; < 1 for CPU-sized models
    "channel_multiplier": 2,
    "num_style_feat": 512,
    "num_mlp": 8,
    "d_width": 1.0,
    # None: the paper's 2e-3 with --pretrained-prior (it fine-tunes a trained StyleGAN2),
    # else 2e-4: from scratch 2e-3 drives the losses to 1e9 within ten steps
    "lr_g": None,
    "lr_d": None,
    "lr_components": None,
    "pixel_weight": 0.1,
    "pyramid_weight": 1.0,
    "pyramid_until": 50_000,
    "perceptual": True,
    "perceptual_weight": 1.0,
    "style_weight": 50.0,
    "perceptual_net": "vgg19",  # the paper's; vgg16 where only VGG16 weights exist
    "perceptual_layers": None,  # None: DEFAULT_LAYER_WEIGHTS[perceptual_net] (GFP-GAN's, on the matching layers)
    "gan": True,
    "gan_weight": 0.1,
    "r1_weight": 10.0,
    "r1_every": 16,
    "components": True,
    "component_gan_weight": 1.0,
    "component_style_weight": 200.0,
    "identity": True,
    "identity_weight": 10.0,
    "identity_net": "arcface",  # the paper's; or sface
    "pretrained_prior": None,
    "fix_decoder": False,
    "model_dir": None,
}


class GFPGANRecipe:
    name = "gfpgan"
    default_preset = "gfpgan"
    needs_masks = False
    defaults = DEFAULTS

    def __init__(self, card: Any = None) -> None:
        self.options: dict[str, Any] = dict(DEFAULTS)
        self.boxes: torch.Tensor | None = None
        self.perceptual = None
        self.identity = None

    # -- building --------------------------------------------------------------------

    def architecture(self, config: TrainConfig) -> dict[str, Any]:
        o = self.options
        return {
            "arch": o["arch"], "out_size": config.size, "num_style_feat": int(o["num_style_feat"]),
            "channel_multiplier": o["channel_multiplier"], "num_mlp": int(o["num_mlp"]), "input_is_latent": True,
            "different_w": True, "narrow": float(o["width"]), "sft_half": True,
        }

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        from facefix.weights import WeightsResolver

        self.options = {**DEFAULTS, **config.recipe}
        o = self.options
        arch = self.architecture(config)
        network_class = GFPGANv1Clean if arch.pop("arch") == "clean" else GFPGANv1
        generator = network_class(**arch, fix_decoder=bool(o["fix_decoder"] and o["pretrained_prior"]))
        if o["pretrained_prior"]:
            self._load_prior(generator, Path(o["pretrained_prior"]))
        models: dict[str, torch.nn.Module] = {"generator": generator.to(device)}
        resolver = WeightsResolver(model_dir=Path(o["model_dir"]) if o["model_dir"] else None)
        if o["gan"]:
            models["discriminator"] = StyleGAN2Discriminator(
                config.size, channel_multiplier=o["channel_multiplier"], narrow=float(o["d_width"])).to(device)
        if o["components"]:
            models["components"] = FacialComponentLoss().to(device)
        if o["perceptual"]:
            layers = o["perceptual_layers"] or DEFAULT_LAYER_WEIGHTS[o["perceptual_net"]]
            self.perceptual = build_perceptual(resolver, o["perceptual_net"], layer_weights=layers,
                                               style_weight=o["style_weight"]).to(device)
        if o["identity"]:
            self.identity = build_identity(resolver, net=o["identity_net"]).to(device)
        return models

    def _load_prior(self, generator: torch.nn.Module, path: Path) -> None:
        from facefix.checkpoints import read_checkpoint
        from facefix.errors import WeightsError

        # a bare StyleGAN2 generator, or a whole GFP-GAN file whose decoder is taken
        state = {key.removeprefix("stylegan_decoder."): value for key, value in read_checkpoint(path).state.items()}
        result = generator.stylegan_decoder.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise WeightsError(f"{path}: not a StyleGAN2 generator of this size and width "
                               f"(missing {', '.join(result.missing_keys[:4])})")

    def setup(self, trainer) -> None:
        if self.options["components"]:
            model_dir = Path(self.options["model_dir"]) if self.options["model_dir"] else None
            landmarks = detect_landmarks(trainer.train_set.files, trainer.config.size, model_dir=model_dir,
                                         quiet=trainer.quiet)
            self.boxes = torch.from_numpy(np.stack([component_boxes(p) for p in landmarks]))

    def lr(self, key: str) -> float:
        value = self.options[key]
        if value is None:
            return 2e-3 if self.options["pretrained_prior"] else 2e-4
        return float(value)

    def build_optimizers(self, models, config):
        o = self.options
        generator_params = [p for p in models["generator"].parameters() if p.requires_grad]
        optimizers = {"generator": torch.optim.Adam(generator_params, lr=self.lr("lr_g"), betas=(0.9, 0.99))}
        if "discriminator" in models:
            # lazy R1: StyleGAN2 rescales the D optimiser for the regularisation interval
            ratio = o["r1_every"] / (o["r1_every"] + 1)
            optimizers["discriminator"] = torch.optim.Adam(
                models["discriminator"].parameters(), lr=self.lr("lr_d") * ratio, betas=(0.9**ratio, 0.99**ratio))
        if "components" in models:
            optimizers["components"] = torch.optim.Adam(models["components"].parameters(), lr=self.lr("lr_components"),
                                                        betas=(0.9, 0.99))
        return optimizers

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
            update_discriminator(step, discriminator, fake, r1_weight=o["r1_weight"], r1_every=o["r1_every"])
        if components is not None:
            update_components(step, components, fake, lambda micro: self._boxes(micro, size))

        def g_loss(micro):
            output, rgbs = generator(micro["lq"], return_rgb=True)
            target = micro["hq"]
            terms = LossTerms()
            terms.add("l1", l1_loss(output, target), o["pixel_weight"])
            if o["pyramid_weight"] and step.iteration < o["pyramid_until"]:
                terms.add("pyramid", pyramid_l1(rgbs, target), o["pyramid_weight"])
            if self.perceptual is not None:
                perceptual, style = self.perceptual(output, target)
                terms.add("perceptual", perceptual, o["perceptual_weight"])
                terms.add("style", style)
            if discriminator is not None:
                terms.add("gan", gan_loss(discriminator(output), True, "softplus", for_discriminator=False),
                          o["gan_weight"])
            if components is not None:
                component_gan, component_style = components.generator_loss(output, target, self._boxes(micro, size))
                terms.add("component_gan", component_gan, o["component_gan_weight"])
                terms.add("component_style", component_style, o["component_style_weight"])
            if self.identity is not None:
                terms.add("identity", self.identity(output, target), o["identity_weight"])
            return terms.result()

        step.update("generator", g_loss)

    # -- validation and export -------------------------------------------------------

    def generate(self, generator, batch):
        return generator(batch["lq"], return_rgb=False)[0]

    def export(self, generator, config) -> dict[str, Any]:
        return {"params_ema": generator.state_dict(), "config": self.architecture(config)}
