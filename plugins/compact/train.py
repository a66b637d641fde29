"""The compact restorer's training recipe: fidelity first.

The default restorer has to beat doing nothing on every kind of input, so it learns
with an L1 pixel loss only (no GAN to invent detail), on random crops of faces
degraded at full size (so blur and noise keep the scale they have at inference). The learning rate warms up, then follows a cosine down to a tenth.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from facefix.errors import FacefixError
from facefix.training.losses import l1_loss
from facefix.training.trainer import TrainConfig
from facefix_plugins.compact.arch import CompactUNet

DEFAULTS: dict[str, Any] = {
    "channels": [24, 48, 96, 192],
    "blocks": [0, 1, 2, 4],
    "up_blocks": [0, 1, 1],
    "lr": 5e-4,
    "warmup": 100,  # steps of linear warm-up
    "final_lr_ratio": 0.1,  # cosine decay ends at lr * this
    "crop": 256,  # random square crop of each degraded pair (0: the whole face)
}


class CompactRecipe:
    name = "compact"
    default_preset = "gfpgan"
    needs_masks = False
    defaults = DEFAULTS

    def __init__(self, card: Any = None) -> None:
        self.options: dict[str, Any] = dict(DEFAULTS)
        self.iters = 1

    def architecture(self) -> dict[str, list[int]]:
        return {key: [int(v) for v in self.options[key]] for key in ("channels", "blocks", "up_blocks")}

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        self.options.update(config.recipe)
        self.iters = config.iters
        if config.size % 16:
            raise FacefixError(f"the compact restorer needs a --size divisible by 16, got {config.size}")
        crop = int(self.options["crop"])
        if crop % 16:  # a crop at least the face size trains on whole faces
            raise FacefixError(f"--crop must be a multiple of 16 (or 0 for whole faces), got {crop}")
        try:
            return {"generator": CompactUNet(**self.architecture()).to(device)}
        except ValueError as error:
            raise FacefixError(f"compact restorer: {error}") from None

    def build_optimizers(self, models, config):
        return {"generator": torch.optim.Adam(models["generator"].parameters(), lr=float(self.options["lr"]),
                                              betas=(0.9, 0.99))}

    def learning_rate(self, iteration: int) -> float:
        base, warmup = float(self.options["lr"]), int(self.options["warmup"])
        if iteration < warmup:
            return base * (iteration + 1) / warmup
        progress = min(1.0, (iteration - warmup) / max(1, self.iters - warmup))
        floor = float(self.options["final_lr_ratio"])
        return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    def _crop(self, lq: torch.Tensor, hq: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The same random square of each LQ face and its target (one offset per face)."""
        crop = int(self.options["crop"])
        size = lq.shape[-1]
        if not crop or crop >= size:
            return lq, hq
        offsets = torch.randint(0, size - crop + 1, (lq.shape[0], 2), generator=generator).tolist()
        lq_crops = torch.stack([face[:, y:y + crop, x:x + crop] for face, (y, x) in zip(lq, offsets)])
        hq_crops = torch.stack([face[:, y:y + crop, x:x + crop] for face, (y, x) in zip(hq, offsets)])
        return lq_crops, hq_crops

    def train_step(self, batch, models, step) -> None:
        generator = models["generator"]
        for group in step.engine.optimizers["generator"].param_groups:
            group["lr"] = self.learning_rate(step.iteration)
        # crops reproducible from the step (the engine seeds the data, not the crops)
        crops = torch.Generator().manual_seed(step.iteration)

        def loss(micro):
            lq, hq = self._crop(micro["lq"], micro["hq"], crops)
            pixel = l1_loss(generator(lq), hq)
            return pixel, {"l1": float(pixel.detach())}

        step.update("generator", loss)

    def generate(self, generator, batch):
        return generator(batch["lq"])

    def export(self, generator, config) -> dict[str, Any]:
        return {"params_ema": generator.state_dict(), "config": self.architecture()}

