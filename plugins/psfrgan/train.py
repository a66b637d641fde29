"""PSFR-GAN training recipes: the LQ face parser and the generator (numbers from the
paper and the reference code, anchors.md).

* ``psfrgan-parse``: cross-entropy against ground-truth masks plus L1 on the parser's
  auxiliary restored image (weights 1 and 1), Adam lr 2e-4, β = (0.9, 0.999), on faces
  degraded with the ``psfrgan`` preset. Validation reports mean IoU over the 19 classes.
* ``psfrgan``: pixel L1 (10) + multi-scale discriminator feature matching (MSE, 10) +
  hinge GAN with 3 spectral-norm patch discriminators conditioned on the HQ parsing map
  (1) + semantic-aware style loss on VGG19 relu3_1/4_1/5_1 (1000); Adam β = (0.5, 0.999),
  lr G 1e-4, D 4e-4. The generator is conditioned on the trained parser's one-hot map of
  the LQ input (``--parser-weights``), as at test time; without one, on the ground-truth
  masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from facefix.errors import FacefixError
from facefix.networks import load_network
from facefix.training.discriminators import MultiScalePatchDiscriminator
from facefix.training.losses import (
    LossTerms,
    build_vgg,
    feature_matching_loss,
    l1_loss,
    multiscale_gan_loss,
    semantic_style_loss,
)
from facefix.metrics.parsing import class_iou, confusion_matrix
from facefix.training.trainer import TrainConfig, set_requires_grad
from facefix_plugins.psfrgan.network import conditioning_map, labels_onehot
from facefix_plugins.psfrgan.arch import PARSE_CLASSES, PSFRGenerator, PSFRParseNet

STYLE_LAYERS = ("relu3_1", "relu4_1", "relu5_1")


# --------------------------------------------------------------------------- parser

PARSER_DEFAULTS: dict[str, Any] = {
    "base_channels": 64,
    "max_channels": 256,
    "res_depth": 10,
    "min_feat_size": 32,
    "lr": 2e-4,
    "parse_weight": 1.0,
    "image_weight": 1.0,
    "model_dir": None,
}


class PSFRParseRecipe:
    name = "psfrgan-parse"
    default_preset = "psfrgan"
    needs_masks = True
    defaults = PARSER_DEFAULTS

    def __init__(self, card: Any = None) -> None:
        self.options: dict[str, Any] = dict(PARSER_DEFAULTS)

    def architecture(self, config: TrainConfig) -> dict[str, Any]:
        o = self.options
        return dict(in_size=config.size, out_size=config.size, min_feat_size=min(int(o["min_feat_size"]), config.size),
                    base_ch=int(o["base_channels"]), parsing_ch=PARSE_CLASSES, res_depth=int(o["res_depth"]),
                    # the first conv is never clipped: a narrower base lowers the floor with it
                    ch_range=(min(32, int(o["base_channels"])), int(o["max_channels"])))

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        self.options = {**PARSER_DEFAULTS, **config.recipe}
        return {"generator": PSFRParseNet(**self.architecture(config)).to(device)}

    def setup(self, trainer) -> None:
        if trainer.config.val is not None:
            raise FacefixError("psfrgan-parse validates against masks of held-out --data faces: leave out --val")

    def build_optimizers(self, models, config):
        return {"generator": torch.optim.Adam(models["generator"].parameters(), lr=self.options["lr"], betas=(0.9, 0.999))}

    def train_step(self, batch, models, step) -> None:
        o = self.options
        parser = models["generator"]

        def loss(micro):
            logits, image = parser(micro["lq"])
            terms = LossTerms(total_name=None)
            terms.add("cross_entropy", F.cross_entropy(logits, micro["mask"]), o["parse_weight"])
            terms.add("l1", l1_loss(image, micro["hq"]), o["image_weight"])
            return terms.result()

        step.update("generator", loss)

    def generate(self, generator, batch):
        return generator(batch["lq"])[1]

    @torch.no_grad()
    def validate(self, trainer) -> dict[str, float]:
        """Mean IoU (and pixel accuracy) of the EMA parser on every held-out face."""
        confusion = np.zeros((PARSE_CLASSES, PARSE_CLASSES), np.int64)
        loader = DataLoader(trainer.val_set, batch_size=max(1, trainer.config.batch_size), shuffle=False)
        for batch in loader:
            with trainer.autocast():
                logits = trainer.ema(batch["lq"].to(trainer.device))[0]
            predicted = logits.argmax(1).cpu().numpy()
            confusion += confusion_matrix(predicted, batch["mask"].numpy(), PARSE_CLASSES)
        iou = class_iou(confusion)
        return {"miou": float(np.nanmean(iou)), "pixel_accuracy": float(np.trace(confusion) / confusion.sum()),
                **{f"iou_{index}": float(value) for index, value in enumerate(iou)}}

    def export(self, generator, config) -> dict[str, Any]:
        return {"params_ema": generator.state_dict(), "config": self.architecture(config)}


# --------------------------------------------------------------------------- generator

GENERATOR_DEFAULTS: dict[str, Any] = {
    "max_channels": 1024,
    "min_feat_size": 16,
    "d_channels": 64,
    "d_layers": 4,
    "num_d": 3,
    "lr_g": 1e-4,
    "lr_d": 4e-4,
    "beta1": 0.5,
    "pixel_weight": 10.0,
    "fm_weight": 10.0,
    "gan_weight": 1.0,
    "style_weight": 1000.0,
    "gan": True,
    "style": True,
    "perceptual_net": "vgg19",  # the semantic style loss's VGG: the reference's, or vgg16 (same relu3_1/4_1/5_1)
    "parser_weights": None,
    "model_dir": None,
}


class PSFRGANRecipe:
    name = "psfrgan"
    default_preset = "psfrgan"
    needs_masks = False
    defaults = GENERATOR_DEFAULTS

    def __init__(self, card: Any) -> None:
        self.options: dict[str, Any] = dict(GENERATOR_DEFAULTS)
        self.card = card  # the generator's card: it names the parser's card (carries["parser"])
        self.parser: PSFRParseNet | None = None
        self.vgg = None

    def architecture(self, config: TrainConfig) -> dict[str, Any]:
        o = self.options
        return dict(out_size=config.size, min_feat_size=min(int(o["min_feat_size"]), config.size),
                    parse_ch=PARSE_CLASSES, in_ch=3, out_ch=3, ch_range=(32, int(o["max_channels"])))

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        from facefix.weights import WeightsResolver

        self.options = {**GENERATOR_DEFAULTS, **config.recipe}
        o = self.options
        models: dict[str, torch.nn.Module] = {"generator": PSFRGenerator(**self.architecture(config)).to(device)}
        if o["gan"]:
            models["discriminator"] = MultiScalePatchDiscriminator(
                num_d=int(o["num_d"]), n_layers=int(o["d_layers"]), base_channels=int(o["d_channels"]),
                input_channels=3 + PARSE_CLASSES).to(device)
        if o["parser_weights"]:
            parser_card = self.card.carries["parser"]
            self.parser = load_network(parser_card, Path(o["parser_weights"])).module.to(device).eval()
            set_requires_grad(self.parser, False)
        if o["style"]:
            resolver = WeightsResolver(model_dir=Path(o["model_dir"]) if o["model_dir"] else None)
            self.vgg = build_vgg(resolver, o["perceptual_net"], STYLE_LAYERS, hint="--no-style").to(device)
        return models

    def setup(self, trainer) -> None:
        if self.parser is None and trainer.config.masks is None:
            raise FacefixError("training psfrgan needs --parser-weights (a trained psfrgan-parse) or --masks")
        if self.parser is None and trainer.config.val is not None:
            raise FacefixError("without --parser-weights the generator is conditioned on ground-truth masks, which "
                               "--val faces lack: pass --parser-weights or leave out --val")

    def build_optimizers(self, models, config):
        o = self.options
        betas = (o["beta1"], 0.999)
        optimizers = {"generator": torch.optim.Adam(models["generator"].parameters(), lr=o["lr_g"], betas=betas)}
        if "discriminator" in models:
            optimizers["discriminator"] = torch.optim.Adam(models["discriminator"].parameters(), lr=o["lr_d"], betas=betas)
        return optimizers

    # -- conditioning ----------------------------------------------------------------

    @torch.no_grad()
    def condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The generator's parsing input: the parser's map of the LQ face, else the true masks."""
        if self.parser is not None:
            return conditioning_map(self.parser, batch["lq"])
        return labels_onehot(batch["mask"], batch["lq"].dtype)

    @torch.no_grad()
    def target_labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Labels of the HQ face (discriminator condition, style-loss regions): the true
        masks when given, else the parser's reading of the HQ face."""
        if "mask" in batch:
            return batch["mask"]
        return conditioning_map(self.parser, batch["hq"]).argmax(1)

    # -- one step --------------------------------------------------------------------

    def train_step(self, batch, models, step) -> None:
        o = self.options
        generator = models["generator"]
        discriminator = models.get("discriminator")

        def prepare(micro):
            labels = self.target_labels(micro)
            return self.condition(micro), labels, labels_onehot(labels, micro["hq"].dtype)

        # the parser's passes (LQ condition, HQ labels) once per micro-batch, for both updates
        prepared = {id(micro): prepare(micro) for micro in step.micro_batches}

        if discriminator is not None:
            set_requires_grad(discriminator, True)

            def d_loss(micro):
                condition, _, target_map = prepared[id(micro)]
                with torch.no_grad():
                    fake = generator(micro["lq"], condition)
                fake_out = discriminator(torch.cat((fake, target_map), 1))
                real_out = discriminator(torch.cat((micro["hq"], target_map), 1))
                loss = 0.5 * (multiscale_gan_loss(fake_out, False, "hinge", for_discriminator=True)
                              + multiscale_gan_loss(real_out, True, "hinge", for_discriminator=True))
                return loss, {"d": float(loss.detach())}

            step.update("discriminator", d_loss)
            set_requires_grad(discriminator, False)

        def g_loss(micro):
            condition, labels, target_map = prepared[id(micro)]
            output = generator(micro["lq"], condition)
            target = micro["hq"]
            terms = LossTerms()
            terms.add("l1", l1_loss(output, target), o["pixel_weight"])
            if discriminator is not None:
                fake_out = discriminator(torch.cat((output, target_map), 1))
                with torch.no_grad():
                    real_out = discriminator(torch.cat((target, target_map), 1))
                terms.add("feature_matching", feature_matching_loss(fake_out, real_out, criterion="l2"), o["fm_weight"])
                terms.add("gan", multiscale_gan_loss(fake_out, True, "hinge", for_discriminator=False), o["gan_weight"])
            if self.vgg is not None:
                fake_features, real_features = self.vgg(output), self.vgg(target)
                terms.add("semantic_style", semantic_style_loss(
                    [fake_features[name] for name in STYLE_LAYERS], [real_features[name] for name in STYLE_LAYERS],
                    labels, PARSE_CLASSES, criterion="l2", classes="all"), o["style_weight"])
            return terms.result()

        step.update("generator", g_loss)

    # -- validation and export -------------------------------------------------------

    def generate(self, generator, batch):
        return generator(batch["lq"], self.condition(batch))

    def export(self, generator, config) -> dict[str, Any]:
        checkpoint: dict[str, Any] = {"params_ema": generator.state_dict(), "config": self.architecture(config)}
        if self.parser is not None:
            checkpoint["parser"] = {"params_ema": self.parser.state_dict(), "config": dict(self.parser.config)}
        return checkpoint
