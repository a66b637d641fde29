"""The ``facefix`` command line. Plugins add commands through ``register_commands``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from facefix import __version__, plugins
from facefix.components import KINDS
from facefix.errors import FacefixError


class PluginGroup(click.Group):
    """A root group that lets plugins add their commands before anything is run."""

    _plugins_added: set[str]

    def _add_plugin_commands(self) -> None:
        if not hasattr(self, "_plugins_added"):
            self._plugins_added = set()
        plugins.load_plugins()
        impls = plugins.pm.hook.register_commands.get_hookimpls()
        pending = [impl for impl in impls if impl.plugin_name not in self._plugins_added]
        if not pending:
            return
        arguments = {"cli": self, "train": train, "export": export}
        for impl in pending:
            self._plugins_added.add(impl.plugin_name)
            try:
                impl.function(*[arguments[name] for name in impl.argnames])
            except Exception as error:
                plugins.warn(f"plugin {impl.plugin_name!r} failed to add commands: {type(error).__name__}: {error}")

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, name)


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facefix")
def cli() -> None:
    """Blind face restoration: detect, align, parse, restore and paste back faces."""


@cli.group()
def train() -> None:
    """Train a network (each network plugin adds its own subcommand)."""


@cli.group()
def export() -> None:
    """Export a network to ONNX (each network plugin adds its own subcommand)."""


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)


# -- plugins ------------------------------------------------------------------------


@cli.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
              help="Folder of weights files to look in (as for restore).")
def plugins_command(as_json: bool, model_dir: Path | None) -> None:
    """List installed plugins and the components they register."""
    from facefix.weights import WeightsResolver, get_entry

    resolver = WeightsResolver(model_dir=model_dir, allow_download=False, progress=False)

    def weights_status(names: tuple[str, ...]) -> str:
        if not names:
            return "none needed"
        statuses = []
        for name in names:
            try:
                statuses.append(resolver.status(get_entry(name)))
            except FacefixError:
                statuses.append("missing")
        for status in ("missing", "downloadable", "available"):
            if status in statuses:
                return status
        return statuses[0]

    listing = {
        "plugins": [
            {"name": info.name, "builtin": info.builtin, "distribution": info.distribution, "hooks": list(info.hooks)}
            for info in plugins.plugin_infos()
        ],
        "components": {
            kind: [
                {
                    "name": spec.name,
                    "plugin": spec.plugin,
                    "description": spec.description,
                    "weights": list(spec.weights),
                    "weights_status": weights_status(spec.weights),
                }
                for spec in sorted(plugins.components(kind).values(), key=lambda spec: spec.name)
            ]
            for kind in KINDS
        },
    }
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    click.echo("Plugins:")
    for info in listing["plugins"]:
        origin = "built-in" if info["builtin"] else (info["distribution"] or "registered at run time")
        click.echo(f"  {info['name']} ({origin}): {', '.join(info['hooks'])}")
    for kind in KINDS:
        click.echo(f"\n{kind.capitalize()}s:")
        for item in listing["components"][kind]:
            click.echo(f"  {item['name']:<24} {item['plugin']:<18} [{item['weights_status']}] {item['description']}")


# -- restore ------------------------------------------------------------------------


# Options shared by `restore` and `video`: which components run, and how.
COMPONENT_OPTIONS = [
    click.option("--detector", help="Face detector (default: the best one whose weights are on disk)."),
    click.option("--parser", "parser_name", help="Face parser, or 'none' (default: only when a component needs one)."),
    click.option("--restorer", help="Face restorer (see `facefix plugins`)."),
    click.option("--blender", default=None, help="Paste-back blender: soft, parse, poisson, ... (default: soft)."),
    click.option("--upscale", type=click.FloatRange(min=0.05, max=16), default=1.0, show_default=True,
                 help="Scale of the output image; faces are pasted at the matching scale."),
    click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True),
    click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
                 help="Folder with weights files, used as given (also FACEFIX_MODEL_DIR)."),
    click.option("--weights", "weights_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="Weights file for the restorer."),
    click.option("--parser-weights", "parser_weights_path", type=click.Path(dir_okay=False, path_type=Path),
                 help="Weights file for the parser (e.g. one trained with `facefix train psfrgan-parse`)."),
    click.option("--fidelity", type=click.FloatRange(0, 1), default=None,
                 help="Restorers that support it: 0 = strongest restoration, 1 = most faithful conditioning."),
    click.option("--backend", type=click.Choice(["auto", "torch", "compile", "onnx"]), default="auto", show_default=True,
                 help="How the restorer runs: auto = the fastest measured for the device (onnxruntime on CPU, "
                      "exported on first use and cached; PyTorch on GPU)."),
    click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
                 help="Arithmetic precision for the torch and compile backends."),
    click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                 help="ONNX file for --backend onnx or --restorer onnx."),
    click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
                 help="Faces per restorer batch (faces from several images share a batch)."),
    click.option("--only-center-face", is_flag=True, help="Restore only the face nearest the image centre."),
    click.option("--largest-face", is_flag=True, help="Restore only the largest face."),
    click.option("--min-face-size", type=click.FloatRange(min=0), default=0, show_default=True,
                 help="Skip faces whose box is smaller than this many pixels."),
    click.option("--detection-threshold", type=click.FloatRange(0, 1), default=None,
                 help="Detector confidence threshold (detector's default when omitted)."),
    click.option("--color-match", is_flag=True, help="Match each restored face's colour statistics to the original."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar or notes (errors are still shown)."),
]


def component_options(command):
    """Decorate a command with :data:`COMPONENT_OPTIONS` (in their listed order)."""
    for option in reversed(COMPONENT_OPTIONS):
        command = option(command)
    return command


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@component_options
@click.option("--aligned", is_flag=True, help="Inputs are already aligned face crops: restore them only.")
@click.option("--save-faces", is_flag=True, help="Also write cropped_faces/, restored_faces/ and cmp/.")
@click.option("--ext", type=click.Choice(["png", "jpg", "webp", "bmp", "tif"]), default=None,
              help="Output format (default: the input's).")
@click.option("--suffix", default="", help="Appended to output file names.")
@click.option("--skip-existing", is_flag=True, help="Leave inputs whose output already exists.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of input folders.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=150_000_000, show_default=True,
              help="Refuse images with more pixels than this.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=None,
              help="JPEG/WebP output quality (default: the input's own quality, at least 95).")
def restore(inputs: tuple[Path, ...], output: Path, detector: str | None, parser_name: str | None,
            restorer: str | None, blender: str | None, upscale: float, aligned: bool, device: str,
            model_dir: Path | None, weights_path: Path | None, parser_weights_path: Path | None,
            fidelity: float | None, backend: str, precision: str, onnx_path: Path | None, batch_size: int, only_center_face: bool,
            largest_face: bool, min_face_size: float, detection_threshold: float | None, color_match: bool,
            save_faces: bool, ext: str | None, suffix: str, skip_existing: bool, recursive: bool,
            max_pixels: int, jpeg_quality: int | None, quiet: bool) -> None:
    """Restore every face in INPUTS (images or folders) and write the results to OUTPUT."""
    from facefix import compose
    from facefix.image_io import find_images
    from facefix.pipeline import Pipeline, PipelineOptions

    missing = [str(path) for path in inputs if not path.exists()]
    if missing:
        fail(f"input not found: {', '.join(missing)}")
    files = find_images(list(inputs), recursive)
    if not files:
        fail(f"no images found in {', '.join(map(str, inputs))}" + ("" if recursive else " (use --recursive for sub-folders)"))

    options = PipelineOptions(
        upscale=upscale, aligned=aligned, only_center_face=only_center_face, largest_face=largest_face,
        min_face_size=min_face_size, save_faces=save_faces, ext=ext, suffix=suffix, skip_existing=skip_existing,
        batch_size=batch_size, color_match=color_match, max_pixels=max_pixels, jpeg_quality=jpeg_quality,
        quiet=quiet,
    )
    try:
        built, chosen, torch_device = compose.assemble(
            detector=detector, parser=parser_name, restorer=restorer, blender=blender, aligned=aligned,
            device=device, model_dir=model_dir, weights_path=weights_path, parser_weights_path=parser_weights_path,
            fidelity=fidelity, backend=backend, precision=precision, onnx_path=onnx_path,
            detection_threshold=detection_threshold, quiet=quiet, note=lambda message: click.echo(message, err=True),
        )
        pipeline = Pipeline(
            restorer=built["restorer"], blender=built.get("blender"), detector=built.get("detector"),
            parser=built.get("parser"), options=options,
        )
    except FacefixError as error:
        fail(str(error))
    if not quiet:
        click.echo(f"facefix: {', '.join(chosen)} on {torch_device}", err=True)
    output.mkdir(parents=True, exist_ok=True)
    summary = pipeline.run(files, output)
    click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)


def _add_core_commands() -> None:
    from facefix.eval_cli import eval_command
    from facefix.training.degrade_cli import degrade
    from facefix.video_cli import video
    from facefix.weights_cli import weights

    cli.add_command(weights)
    cli.add_command(degrade)
    cli.add_command(eval_command)
    cli.add_command(video)


_add_core_commands()


def main() -> None:
    cli(prog_name="facefix")
