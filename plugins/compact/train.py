"""The compact restorer's training recipe: fidelity first, then perception.

The default restorer has to beat doing nothing on every kind of input, so its base is
an L1 pixel loss (no GAN to invent detail), on random crops of faces degraded at full
size (so blur and noise keep the scale they have at inference). A perceptual loss on
VGG16 (or VGG19) features (``--perceptual-weight``) makes it sharper, and an identity
loss on SFace (or ArcFace) embeddings (``--identity-weight``, on the whole face:
identity needs the whole face) keeps who it is. ``--init FILE`` starts from a trained
compact checkpoint (v2 is v1 fine-tuned this way). The learning rate warms up, then
follows a cosine down to a tenth.
"""

from __future__ import annotations

from typing import Any

import torch

from facefix.errors import FacefixError
from facefix.networks import load_network
from facefix.training.data import paired_random_crop
from facefix.training.losses import DEFAULT_LAYER_WEIGHTS, LossTerms, build_identity, build_perceptual, l1_loss
from facefix.training.trainer import TrainConfig
from facefix.weights import WeightsResolver
from facefix_plugins.compact.arch import CompactUNet

DEFAULTS: dict[str, Any] = {
    "channels": [24, 48, 96, 192],
    "blocks": [0, 1, 2, 4],
    "up_blocks": [0, 1, 1],
    "lr": 2e-4,  # 5e-4 diverged from scratch without gradient clipping
    "warmup": 100,  # steps of linear warm-up
    "final_lr_ratio": 0.1,  # cosine decay ends at lr * this
    "crop": 256,  # random square crop of each degraded pair (0: the whole face)
    "perceptual_weight": 0.0,  # × the VGG feature L1 (GFP-GAN's layer weights)
    "perceptual_net": "vgg16",
    # "features": L1 between VGG features (GFP-GAN's); "lpips": LPIPS on VGG16, whose
    # channel-normalised features and calibrated layer weights keep every layer in play
    "perceptual_kind": "features",
    "perceptual_layers": None,  # None: DEFAULT_LAYER_WEIGHTS[perceptual_net]
    # VGG costs 6x the network at 256 px on a CPU: it sees a random square of this size
    # of each crop (full resolution, so textures keep their scale; 0: the whole crop)
    "perceptual_crop": 128,
    "identity_weight": 0.0,  # × the L1 between identity embeddings
    "identity_net": "sface",
    # identity needs the whole face (SFace's crop spans 400 of its 512 px): this many faces
    # of each batch are also restored whole for it (0: every face)
    "identity_faces": 2,
    "init": None,  # a compact checkpoint to start from
    "model_dir": None,
}


class CompactRecipe:
    name = "compact"
    default_preset = "gfpgan"
    needs_masks = False
    defaults = DEFAULTS

    def __init__(self, card: Any = None) -> None:
        self.options: dict[str, Any] = dict(DEFAULTS)
        self.card = card
        self.perceptual = None
        self.identity = None

    def architecture(self) -> dict[str, list[int]]:
        return {key: [int(v) for v in self.options[key]] for key in ("channels", "blocks", "up_blocks")}

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        self.options.update(config.recipe)
        if config.size % 16:
            raise FacefixError(f"the compact restorer needs a --size divisible by 16, got {config.size}")
        crop = int(self.options["crop"])
        if crop % 16:  # a crop at least the face size trains on whole faces
            raise FacefixError(f"--crop must be a multiple of 16 (or 0 for whole faces), got {crop}")
        o = self.options
        if o["init"]:
            network = load_network(self.card, o["init"]).module
            self.options.update({key: list(value) for key, value in network.config().items()})
        else:
            try:
                network = CompactUNet(**self.architecture())
            except ValueError as error:
                raise FacefixError(f"compact restorer: {error}") from None
        resolver = WeightsResolver(model_dir=o["model_dir"], progress=False)
        if float(o["perceptual_weight"]) > 0 and o["perceptual_kind"] == "lpips":
            if o["perceptual_net"] != "vgg16":
                raise FacefixError("the lpips perceptual loss runs on vgg16 (LPIPS' heads are calibrated for it)")
            from facefix.metrics.lpips import LPIPS

            model = LPIPS("lpips_vgg", resolver.resolve("vgg16"), device).model.requires_grad_(False)
            self.perceptual = lambda restored, target: (model(restored, target).mean(), None)
        elif float(o["perceptual_weight"]) > 0:
            layers = o["perceptual_layers"] or DEFAULT_LAYER_WEIGHTS[o["perceptual_net"]]
            self.perceptual = build_perceptual(resolver, o["perceptual_net"], layer_weights=layers).to(device)
        if float(o["identity_weight"]) > 0:
            self.identity = build_identity(resolver, net=o["identity_net"]).to(device)
        return {"generator": network.to(device)}

    def build_optimizers(self, models, config):
        return {"generator": torch.optim.Adam(models["generator"].parameters(), lr=float(self.options["lr"]),
                                              betas=(0.9, 0.99))}

    def lr_schedule(self) -> dict[str, Any]:
        """Warm-up, then a cosine down to ``final_lr_ratio`` of the peak (the engine applies it)."""
        return {"kind": "cosine", "warmup": int(self.options["warmup"]),
                "final_ratio": float(self.options["final_lr_ratio"])}

    def _crop(self, lq: torch.Tensor, hq: torch.Tensor, generator: torch.Generator,
              crop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The same random square of each LQ face and its target (one offset per face)."""
        return paired_random_crop(lq, hq, int(self.options["crop"]) if crop is None else crop, generator)

    def train_step(self, batch, models, step) -> None:
        generator = models["generator"]
        # crops reproducible from the step (the engine seeds the data, not the crops)
        crops = torch.Generator().manual_seed(step.iteration)

        o = self.options

        def loss(micro):
            lq, hq = self._crop(micro["lq"], micro["hq"], crops)
            restored = generator(lq)
            terms = LossTerms(total_name=None)
            terms.add("l1", l1_loss(restored, hq))
            if self.perceptual is not None:
                perceptual, _ = self.perceptual(*self._crop(restored, hq, crops, int(o["perceptual_crop"])))
                terms.add("perceptual", perceptual, float(o["perceptual_weight"]))
            if self.identity is not None:
                whole = int(o["identity_faces"]) or len(micro["lq"])
                terms.add("identity", self.identity(generator(micro["lq"][:whole]), micro["hq"][:whole]),
                          float(o["identity_weight"]))
            return terms.result()

        step.update("generator", loss)

    def generate(self, generator, batch):
        return generator(batch["lq"])

    def export(self, generator, config) -> dict[str, Any]:
        return {"params_ema": generator.state_dict(), "config": self.architecture()}

