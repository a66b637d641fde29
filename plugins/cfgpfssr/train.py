"""The CFGPFSSR training recipe (paper §3.5 and §4.1, as ``cfgpfssr-spec.md`` §2 reads them).

``L = L_mse + 1e-2 L_percep + 1e-2 L_gan``:

* MSE between the super-resolved face and the high-resolution one;
* perceptual: MSE of VGG16 ``conv4_3`` features (before its ReLU; V14), or VGG19's
  ``conv5_4`` with ``--perceptual-net vgg19``;
* adversarial: non-saturating binary cross-entropy on a StyleGAN2 discriminator (V15),
  no R1 (the paper has none).

Adam (0.9, 0.99) at 5e-5 for the network and the discriminator, cosine-annealed over
the run; the prior bank is frozen when it starts from a pretrained StyleGAN2
(``--pretrained-prior``) and trained otherwise (a frozen random prior proves nothing).

The low-resolution input is made here from each high-resolution face: antialiased
bicubic down by the network's factor (MATLAB ``imresize``'s closest PyTorch op; V19),
which is why the recipe's degradation preset is ``none``. The
parsing prior is the parser of ``--parser-weights`` on the bicubically enlarged input,
as at test time, or the ground-truth ``--masks`` ("oracle parsing").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from facefix.checkpoints import load_into, read_checkpoint
from facefix.errors import FacefixError
from facefix.networks import load_network
from facefix.nn.parsing import labels_onehot
from facefix.training.adversarial import update_discriminator
from facefix.training.data import paired_random_crop
from facefix.training.discriminators import StyleGAN2Discriminator
from facefix.training.losses import LossTerms, build_perceptual, gan_loss, mse_loss
from facefix.training.trainer import TrainConfig, set_requires_grad
from facefix.weights import WeightsResolver
from facefix_plugins.cfgpfssr.arch import CFGPFSSRNet
from facefix_plugins.cfgpfssr.network import load_prior, parse_low_resolution, parser_card

#: the perceptual layer per VGG: GLEAN's VGG16 index 21 (conv4_3), VGG19's deepest conv
PERCEPTUAL_LAYER = {"vgg16": "conv4_3", "vgg19": "conv5_4"}

DEFAULTS: dict[str, Any] = {
    "scale": 16,
    "rrdb_blocks": 23,
    "rrdb_channels": 64,
    "rrdb_growth": 32,
    "head_channels": 64,  # the RGB head's hidden conv (GLEAN's 64)
    "channel_multiplier": 2,
    "width": 1.0,
    "style_dim": 512,
    "num_mlp": 8,
    "latent_per_block": False,
    "features": True,
    "parsing": True,
    "d_channel_multiplier": None,  # None: the network's
    "d_width": None,
    "lr": 5e-5,
    "lr_d": None,  # None: the same as lr
    "final_lr_ratio": None,  # None: down to 1e-7 (GLEAN's CosineRestart floor)
    "warmup": 0,  # steps of linear lr warm-up before the cosine
    "down_kernels": ["bicubic"],  # how the inputs are shrunk, one drawn per face: bicubic (V19), area, bilinear
    "mse_weight": 1.0,
    "perceptual": True,
    "perceptual_weight": 1e-2,
    "perceptual_net": "vgg16",
    "perceptual_crop": None,  # None: the whole face; a size: the same random square of output and target
    "perceptual_start": 0,  # the step from which the perceptual term counts
    "gan": True,
    "gan_weight": 1e-2,
    "gan_start": 0,  # the step from which the discriminator trains and the GAN term counts
    "fix_prior": None,  # None: frozen exactly when a pretrained prior is given
    "pretrained_prior": None,
    "pretrained_discriminator": None,
    "parser_weights": None,
    "model_dir": None,
}


#: the ways an input can be shrunk in training: the paper's antialiased bicubic (V19), a box
#: average (OpenCV's INTER_AREA, ``facefix degrade``'s), antialiased bilinear
DOWN_KERNELS = ("bicubic", "area", "bilinear")


def make_low_resolution(hq: torch.Tensor, size: int, kernel: str = "bicubic") -> torch.Tensor:
    """``hq`` shrunk to ``size`` by ``kernel`` (one of :data:`DOWN_KERNELS`), kept in [-1, 1]."""
    if kernel == "area":
        return F.adaptive_avg_pool2d(hq, size).clamp(-1, 1)
    return F.interpolate(hq, size=(size, size), mode=kernel, antialias=True, align_corners=False).clamp(-1, 1)


def mixed_low_resolution(hq: torch.Tensor, size: int, kernels: list[str], generator: torch.Generator) -> torch.Tensor:
    """Each face of ``hq`` shrunk by a kernel drawn from ``kernels``: a network trained on
    one kernel alone does worse on faces shrunk by another."""
    if len(kernels) == 1:
        return make_low_resolution(hq, size, kernels[0])
    drawn = torch.randint(len(kernels), (hq.shape[0],), generator=generator).tolist()
    return torch.cat([make_low_resolution(hq[i : i + 1], size, kernels[k]) for i, k in enumerate(drawn)])


def bicubic_baseline(lr: torch.Tensor, size: int) -> torch.Tensor:
    """The low-resolution face enlarged bicubically: what the network has to beat."""
    return F.interpolate(lr, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


class CFGPFSSRRecipe:
    name = "cfgpfssr"
    default_preset = "none"
    needs_masks = False
    defaults = DEFAULTS

    def __init__(self, card: Any) -> None:
        self.options: dict[str, Any] = dict(DEFAULTS)
        self.parser = None
        self.perceptual = None

    # -- building --------------------------------------------------------------------

    def architecture(self, config: TrainConfig) -> dict[str, Any]:
        o = self.options
        scale = int(o["scale"])
        if scale < 2 or config.size % scale:
            raise FacefixError(f"cfgpfssr: --size {config.size} is not a multiple of the scale {scale}")
        return dict(out_size=config.size, in_size=config.size // scale, rrdb_blocks=int(o["rrdb_blocks"]),
                    rrdb_channels=int(o["rrdb_channels"]), rrdb_growth=int(o["rrdb_growth"]),
                    head_channels=int(o["head_channels"]),
                    channel_multiplier=float(o["channel_multiplier"]), narrow=float(o["width"]),
                    style_dim=int(o["style_dim"]), num_mlp=int(o["num_mlp"]),
                    latent_per_block=bool(o["latent_per_block"]), features=bool(o["features"]),
                    parsing=bool(o["parsing"]))

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        self.options = {**DEFAULTS, **config.recipe}
        o = self.options
        kernels = o["down_kernels"]
        if not kernels or any(kernel not in DOWN_KERNELS for kernel in kernels):
            raise FacefixError(f"cfgpfssr: down_kernels must name some of {', '.join(DOWN_KERNELS)}, got {kernels!r}")
        try:
            network = CFGPFSSRNet(**self.architecture(config))
        except ValueError as error:
            raise FacefixError(f"cfgpfssr: {error}") from None
        if o["pretrained_prior"]:
            load_prior(network, Path(o["pretrained_prior"]))
        fix_prior = bool(o["pretrained_prior"]) if o["fix_prior"] is None else bool(o["fix_prior"])
        for parameter in network.prior_parameters():
            parameter.requires_grad_(not fix_prior)
        self.fix_prior = fix_prior
        models: dict[str, torch.nn.Module] = {"generator": network.to(device)}
        if o["gan"]:
            multiplier = o["d_channel_multiplier"] if o["d_channel_multiplier"] is not None else o["channel_multiplier"]
            discriminator = StyleGAN2Discriminator(config.size, channel_multiplier=float(multiplier),
                                                   narrow=float(o["d_width"] if o["d_width"] is not None else o["width"]))
            if o["pretrained_discriminator"]:
                path = o["pretrained_discriminator"]
                load_into(discriminator, read_checkpoint(path).state, path,
                          "not a StyleGAN2 discriminator of this size and width")
            set_requires_grad(discriminator, False)
            models["discriminator"] = discriminator.to(device)
        if o["parser_weights"] and o["parsing"]:
            self.parser = load_network(parser_card(), Path(o["parser_weights"])).module.to(device).eval()
            set_requires_grad(self.parser, False)
        if o["perceptual"]:
            resolver = WeightsResolver(model_dir=Path(o["model_dir"]) if o["model_dir"] else None)
            net = o["perceptual_net"]
            self.perceptual = build_perceptual(resolver, net, {PERCEPTUAL_LAYER[net]: 1.0}, criterion="l2").to(device)
        return models

    def setup(self, trainer) -> None:
        if not self.options["parsing"]:
            return
        if self.parser is None and trainer.config.masks is None:
            raise FacefixError("training cfgpfssr with its parsing prior needs --parser-weights (a trained "
                               "psfrgan-parse) or --masks (oracle parsing); --no-parsing trains without one")
        if self.parser is None and trainer.config.val is not None:
            raise FacefixError("with --masks (oracle parsing) the held-out faces need masks too, which --val faces "
                               "lack: leave out --val, or pass --parser-weights")

    def build_optimizers(self, models, config):
        o = self.options
        trainable = [p for p in models["generator"].parameters() if p.requires_grad]
        optimizers = {"generator": torch.optim.Adam(trainable, lr=float(o["lr"]), betas=(0.9, 0.99))}
        if "discriminator" in models:
            optimizers["discriminator"] = torch.optim.Adam(
                models["discriminator"].parameters(), lr=float(o["lr_d"] if o["lr_d"] is not None else o["lr"]),
                betas=(0.9, 0.99))
        return optimizers

    def lr_schedule(self) -> dict[str, Any]:
        ratio = self.options["final_lr_ratio"]
        return {"kind": "cosine", "warmup": int(self.options["warmup"]),
                "final_ratio": float(ratio) if ratio is not None else 1e-7 / float(self.options["lr"])}

    # -- inputs ----------------------------------------------------------------------

    def inputs(self, network: CFGPFSSRNet, batch: dict[str, torch.Tensor],
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The low-resolution face and its parsing map (the parser's, else the true masks).
        With a ``generator`` (training) each face's kernel is drawn from ``down_kernels``;
        without (validation) the first one shrinks every face."""
        kernels = self.options["down_kernels"]
        lr = (make_low_resolution(batch["hq"], network.in_size, kernels[0]) if generator is None
              else mixed_low_resolution(batch["hq"], network.in_size, kernels, generator))
        if not network.uses_parsing:
            return lr, None
        with torch.no_grad():
            if self.parser is not None:
                return lr, parse_low_resolution(self.parser, lr)
            return lr, labels_onehot(batch["mask"], lr.dtype)

    # -- one step --------------------------------------------------------------------

    def train_step(self, batch, models, step) -> None:
        o = self.options
        network = models["generator"]
        discriminator = models.get("discriminator")

        # kernels and crops reproducible from the step (the engine seeds the data, not these)
        crops = torch.Generator().manual_seed(step.iteration)
        # the low-resolution input and its parsing (a parser pass) once per micro-batch, for both updates
        inputs = {id(micro): self.inputs(network, micro, crops) for micro in step.micro_batches}
        if discriminator is not None and step.iteration < int(o["gan_start"]):
            # from scratch at 16x the perceptual and GAN terms outweigh the MSE and hold the
            # output back from the colours and shapes a judge needs: they can start later
            discriminator = None
        if discriminator is not None:
            update_discriminator(step, discriminator, lambda micro: network(*inputs[id(micro)]),
                                 r1_weight=0.0, r1_every=1)

        def g_loss(micro):
            output = network(*inputs[id(micro)])
            target = micro["hq"]
            terms = LossTerms()
            terms.add("mse", mse_loss(output, target), o["mse_weight"])
            if self.perceptual is not None and step.iteration >= int(o["perceptual_start"]):
                # a crop keeps VGG, most of a CPU step at full size, affordable
                pair = paired_random_crop(output, target, o["perceptual_crop"], crops)
                terms.add("perceptual", self.perceptual(*pair)[0], o["perceptual_weight"])
            if discriminator is not None:
                terms.add("gan", gan_loss(discriminator(output), True, "vanilla"), o["gan_weight"])
            return terms.result()

        step.update("generator", g_loss)

    # -- validation and export -------------------------------------------------------

    def generate(self, generator, batch):
        return generator(*self.inputs(generator, batch))

    #: validation scores the network against its input enlarged bicubically (psnr_bicubic, …)
    baseline_name = "bicubic"

    @torch.no_grad()
    def baseline(self, generator, batch):
        lr = make_low_resolution(batch["hq"], generator.in_size, self.options["down_kernels"][0])
        return bicubic_baseline(lr, generator.out_size)

    def export(self, generator, config) -> dict[str, Any]:
        checkpoint: dict[str, Any] = {"params_ema": generator.state_dict(), "config": dict(generator.config)}
        if self.parser is not None:
            checkpoint["parser"] = {"params_ema": self.parser.state_dict(), "config": dict(self.parser.config)}
        return checkpoint
