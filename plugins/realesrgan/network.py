"""From a loaded Real-ESRGAN network to the upsampler component."""

from __future__ import annotations

from typing import Any

from facefix.components import ComponentContext
from facefix.upsamplers import TorchUpsampler
from facefix_plugins.realesrgan.arch import srvgg_receptive_radius

#: RRDBNet's receptive field spans hundreds of pixels, but what lies beyond this many input
#: pixels moves the output by less than a level (benchmarks/README.md measures it).
RRDB_OVERLAP = 32


def rrdb_upsampler(network: Any, context: ComponentContext, name: str) -> TorchUpsampler:
    scale = int(network.config.get("scale", 4))
    return TorchUpsampler(network.module, scale=scale, tile=context.tile, overlap=RRDB_OVERLAP,
                          multiple={4: 1, 2: 2, 1: 4}[scale], device=context.device, name=name,
                          weights=network.path)


def srvgg_upsampler(network: Any, context: ComponentContext, name: str) -> TorchUpsampler:
    # its receptive radius is small and exact: tiles with that much context equal the whole image
    return TorchUpsampler(network.module, scale=int(network.config.get("upscale", 4)), tile=context.tile,
                          overlap=srvgg_receptive_radius(network.config), device=context.device, name=name,
                          weights=network.path)
