"""``facefix export NAME``: the ONNX export every exportable restorer and upsampler card gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from facefix.cards import NetworkCard
from facefix.cli.common import fail
from facefix.cli.types import FiniteFloat, InputFile
from facefix.onnx import DEFAULT_OPSET


def _shared_options(card: NetworkCard, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every export command has: which weights, where to, and how."""
    tags = [variant.tag for variant in card.variants]
    default = card.default_variant.tag if card.default_variant else None
    options = [
        click.option("--variant", type=click.Choice(tags) if tags else None, default=default, show_default=True,
                     help="Which released weights (ignored with --weights).", hidden=not tags),
        click.option("--weights", "weights_path", type=InputFile(path_type=Path),
                     help="Weights file (default: the variant's registered checkpoint)."),
        click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
                     help="The .onnx file to write."),
        click.option("--opset", type=click.IntRange(11, 23), default=DEFAULT_OPSET, show_default=True,
                     help="ONNX opset version."),
        click.option("--fp16", is_flag=True, help="Half-precision weights and I/O (for GPUs)."),
        click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
                     help="Folder with weights files (also FACEFIX_MODEL_DIR)."),
        click.option("--sample", type=InputFile(path_type=Path),
                     help=f"{what} to compare PyTorch and onnxruntime on."),
    ]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def check_output(output: Path, inputs: dict[str, Path | None]) -> None:
    """Before anything is built: OUTPUT is not one of the inputs, nor a device or a folder,
    and its folder can be written to."""
    import os

    from facefix.atomic import refuse_input_as_output, refuse_unreplaceable
    from facefix.errors import OutputError

    refuse_input_as_output(output, inputs)
    refuse_unreplaceable(output)
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(output, f"can't be written: {folder} is read-only for this user")


def _spec_of(card: NetworkCard, variant: str | None) -> Any:
    from facefix import plugins

    return next(spec for spec in plugins.components(card.kind).values()
                if spec.card is card and (spec.tag == variant or spec.tag is None))


def upsampler_export_command(card: NetworkCard) -> click.Command:
    """``facefix export NAME`` for an upsampler: free height and width in the exported graph."""

    @click.command(name=card.name, help=f"Export {card.title} (an upsampler) to ONNX (any image size), check it "
                                        "and compare with PyTorch.")
    @_shared_options(card, "Image")
    def command(variant, weights_path, output, opset, fp16, model_dir, sample):
        from facefix import compose
        from facefix.errors import FacefixError
        from facefix.image_io import read_image
        from facefix.upsamplers import export_upsampler
        from facefix.weights import WeightsResolver

        try:
            check_output(output, {"--weights": weights_path, "--sample": sample})
            spec = _spec_of(card, variant)
            upsampler = compose.build(spec, device="cpu", resolver=WeightsResolver(model_dir=model_dir),
                                      weights_path=weights_path)
            image = read_image(sample).bgr8()[:256, :256] if sample is not None else None
            report = export_upsampler(upsampler, output, opset=opset, fp16=fp16, sample=image)
        except FacefixError as error:
            fail(str(error))
        except OSError as error:  # a full disk, a read-only folder: the file that failed, in one line
            fail(f"{error.filename or output}: {error.strerror or error}")
        click.echo(f"exported {spec.name} to {report.path} (opset {report.opset}, any height and width); ONNX "
                   f"checker passed; max |onnxruntime - torch| = {report.max_abs_difference:.2e} (in [0, 1])")

    return command


def export_command(card: NetworkCard) -> click.Command:
    """``facefix export NAME [--variant TAG]``: the variant's weights (or ``--weights``) to ONNX,
    checked and compared with PyTorch."""
    if card.kind == "upsampler":
        return upsampler_export_command(card)

    @click.command(name=card.name, help=f"Export {card.title} (a {card.kind}) to ONNX, check it and compare with PyTorch.")
    @_shared_options(card, "Aligned face image")
    @click.option("--dynamic-batch", is_flag=True, help="Let the batch size vary at run time.")
    @click.option("--fidelity", type=FiniteFloat(0, 1), default=None,
                  help="For a network with a fidelity: the graph takes it as its 'weight' input, (1,) float32; "
                       "this value is recorded as that input's default and checked against PyTorch. "
                       "[default: 1]")
    @click.option("--parser-weights", type=InputFile(path_type=Path),
                  help="Parser exported inside the graph, for a network that parses its input but whose "
                       "file carries no parser.")
    def command(variant, weights_path, output, opset, fp16, model_dir, sample, dynamic_batch, fidelity,
                parser_weights):
        import cv2

        from facefix import compose
        from facefix.errors import FacefixError
        from facefix.image_io import read_image
        from facefix.onnx import export_restorer
        from facefix.weights import WeightsResolver

        try:
            check_output(output, {"--weights": weights_path, "--sample": sample, "--parser-weights": parser_weights})
            resolver = WeightsResolver(model_dir=model_dir)
            spec = _spec_of(card, variant)
            selection = compose.ComponentSelection(fidelity=fidelity, device="cpu", parser_weights=parser_weights)
            restorer = compose.build(spec, device="cpu", resolver=resolver, selection=selection,
                                     weights_path=weights_path, note=lambda text: click.echo(text, err=True))
            face = None
            if sample is not None:
                face = cv2.resize(read_image(sample).bgr8(), (restorer.input_size, restorer.input_size),
                                  interpolation=cv2.INTER_AREA)
            report = export_restorer(restorer, output, opset=opset, dynamic_batch=dynamic_batch, fp16=fp16,
                                     sample=face)
        except FacefixError as error:
            fail(str(error))
        except OSError as error:  # a full disk, a read-only folder: the file that failed, in one line
            fail(f"{error.filename or output}: {error.strerror or error}")
        click.echo(f"exported {spec.name} to {report.path} (opset {report.opset}); ONNX checker passed; "
                   f"max |onnxruntime - torch| = {report.max_abs_difference:.2e} on a {restorer.input_size}px face")
        if getattr(restorer, "fidelity", None) is not None:
            click.echo(f"inputs: input (N, 3, {restorer.input_size}, {restorer.input_size}) and weight (1,), the "
                       f"fidelity in [0, 1] (checked at {restorer.fidelity:g})")

    return command
