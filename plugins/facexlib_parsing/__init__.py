"""facexlib's face parsers, ParseNet and BiSeNet, speaking CelebAMask-HQ's label order
(:mod:`facefix_plugins.facexlib_parsing.parsers`, imported when one is built)."""

from __future__ import annotations

from facefix import hookimpl, lazy


@hookimpl
def register_parsers(register):
    register("parsenet", lazy("facefix_plugins.facexlib_parsing.parsers:build_parsenet"), rank=10,
             description="facexlib ParseNet (PSFR-GAN's parser), 512 px", weights=("parsenet",))
    register("bisenet", lazy("facefix_plugins.facexlib_parsing.parsers:build_bisenet"), rank=20,
             description="facexlib BiSeNet (face-parsing.PyTorch), 512 px", weights=("bisenet",))
