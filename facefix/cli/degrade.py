"""``facefix degrade``: write synthetic low-quality copies of face images."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import cv2
import numpy as np

from facefix.cli.types import InputFile
from facefix.errors import InputError, error_text
from facefix.training.degradations import (
    PRESETS,
    DegradationConfigError,
    apply_params,
    rng_for,
    sample_params,
    target_for,
)

RECORD_NAME = "degradation.json"


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(1)


def load_overrides(path: Path) -> dict[str, Any]:
    """Read a JSON degradation config: overrides on top of the preset.

    The file is either the overrides themselves (``{"jpeg": {"quality": [30, 70]}}``),
    a training config holding them under ``"degradation"``, or a ``degradation.json``
    written by this command (its ``"config"``), which reproduces that run.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DegradationConfigError(f"{path}: unreadable ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DegradationConfigError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise DegradationConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in ("degradation", "config"):
        if isinstance(data.get(key), dict):
            return data[key]
    return data


def resize_longer_side(pixels: np.ndarray, size: int) -> np.ndarray:
    """Scale so the longer side is ``size`` px, aspect kept (area when shrinking, cubic when enlarging)."""
    height, width = pixels.shape[:2]
    ratio = size / max(height, width)
    new_size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    if new_size == (width, height):
        return pixels
    interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_CUBIC
    return cv2.resize(pixels, new_size, interpolation=interpolation)


@click.command(name="degrade")
@click.argument("source", metavar="IN", type=click.Path(exists=True, path_type=Path))
@click.argument("output", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="gfpgan", show_default=True,
              help="Degradation recipe to start from.")
@click.option("--config", "config_path", type=InputFile(path_type=Path),
              help="JSON overriding any part of the preset, e.g. {\"jpeg\": {\"quality\": [30, 70]}} "
                   "(an OUT/degradation.json reproduces that run).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the run: file i uses the generator of (seed, i).")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Resize each input first so its longer side is PX pixels (a 512 face becomes PX x PX).")
@click.option("--ext", type=click.Choice(["png", "jpg", "webp", "bmp", "tif"]), default="png", show_default=True,
              help="Output format (jpg and webp add their own compression on top of the recipe's).")
@click.option("--save-hq", "hq_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the matching targets here (resized by --size, gray when the LQ "
                   "was grayed and the recipe grays targets too), for evaluation sets.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of IN.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (errors and the summary are still shown).")
def degrade_command(source: Path, output: Path, preset: str, config_path: Path | None, seed: int, size: int | None,
            ext: str, hq_dir: Path | None, recursive: bool, quiet: bool) -> None:
    """Write degraded copies of the images in IN (a file or folder) to the folder OUT.

    Outputs keep their relative names (with the --ext extension). Files are taken in
    sorted order of relative path and the i-th uses index i (counting files that fail),
    so the same folder, preset, config and seed give byte-identical outputs on every
    run (with the same OpenCV build). OUT/degradation.json records the preset, seed,
    full config and each file's drawn parameters.
    """
    from tqdm import tqdm

    from facefix.atomic import write_bytes_atomic
    from facefix.image_io import find_images, read_image, write_image

    config = PRESETS[preset]
    if config_path is not None:
        try:
            overrides = load_overrides(config_path)
        except DegradationConfigError as error:
            _fail(str(error))
        try:
            config = config.with_overrides(overrides)
        except DegradationConfigError as error:
            _fail(f"{config_path}: {error}")
    if hq_dir is not None and hq_dir.resolve() == output.resolve():
        _fail("--save-hq must be another folder than OUT")

    files = find_images([source], recursive)
    if not files:
        _fail(f"no images found in {source}" + ("" if recursive else " (use --recursive for sub-folders)"))

    inputs = {path.resolve() for path, _ in files}
    claimed: dict[Path, Path] = {}
    records: list[dict[str, Any]] = []
    done = failed = 0
    output.mkdir(parents=True, exist_ok=True)
    progress = tqdm(files, desc="degrade", unit="img", disable=quiet, file=sys.stderr)
    for index, (path, relative) in enumerate(progress):
        name = relative.parent / f"{relative.stem}.{ext}"
        record: dict[str, Any] = {"index": index, "input": relative.as_posix(), "output": name.as_posix()}
        try:
            targets = [output / name] + ([hq_dir / name] if hq_dir is not None else [])
            for target in targets:
                resolved = target.resolve()
                if resolved in inputs:
                    raise InputError(path, f"output {target} would overwrite an input; choose another folder")
                if resolved in claimed:
                    raise InputError(path, f"output {target} is already written for {claimed[resolved]}")
            for target in targets:
                claimed[target.resolve()] = path
            hq = read_image(path).bgr8()
            if size is not None:
                hq = resize_longer_side(hq, size)
            params = sample_params(config, rng_for(seed, index), hq.shape[0], hq.shape[1])
            write_image(output / name, apply_params(hq, params))
            if hq_dir is not None:
                write_image(hq_dir / name, target_for(hq, params))
            record["params"] = params.to_dict()
            done += 1
        except Exception as error:  # one line per bad file; the batch goes on
            failed += 1
            message = error_text(error, path)
            record["error"] = message
            tqdm.write(f"error: {message}", file=sys.stderr)
        records.append(record)
    progress.close()

    summary = {
        "preset": preset,
        "config_file": str(config_path) if config_path is not None else None,
        "seed": seed,
        "size": size,
        "ext": ext,
        "index_rule": "file i in sorted order of relative path: "
                      "facefix.training.degradations.degrade_for(hq, config, seed, i)",
        "config": config.to_dict(),
        "degraded": done,
        "failed": failed,
        "files": records,
    }
    write_bytes_atomic(output / RECORD_NAME, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    click.echo(f"{done} degraded, {failed} failed", err=True)
    if failed:
        raise click.exceptions.Exit(1)
