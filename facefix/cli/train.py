"""``facefix train NAME``: the command every network card with a recipe gets.

Common options (data, size, iterations, batch, precision, checkpoints, resume, config
file) live here; a card's recipe adds its own as ``(flag, recipe key, click kwargs)``.
Precedence: recipe defaults < ``--config FILE`` < command-line flags.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from facefix.cards import NetworkCard
from facefix.cli.types import FiniteFloat, InputFile, finite, input_file
from facefix.training import defaults
from facefix.errors import FacefixError, brief


def train_command(card: NetworkCard) -> click.Command:
    """``facefix train COMMAND`` for a card with a :class:`~facefix.cards.Training`."""
    training = card.training
    name, recipe_options, default_size = card.train_command, training.options, training.size

    def command(**values: Any) -> None:
        try:
            run(values)
        except FacefixError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)
        except click.ClickException:
            raise
        except Exception as error:  # a fault of the data or the machine still gets one line
            click.echo(f"Error: train {name}: {type(error).__name__}: {brief(error, 300)}", err=True)
            sys.exit(1)

    def run(values: dict[str, Any]) -> None:
        from facefix.inference import select_device
        from facefix.threads import use_threads
        from facefix.training.trainer import Trainer, TrainConfig

        use_threads(values["threads"])

        recipe = training.recipe(card)
        settings: dict[str, Any] = {"network": name, "size": default_size, "recipe": dict(recipe.defaults)}
        if values["config_file"] is not None:
            from_file = TrainConfig.from_file(values["config_file"])
            settings["recipe"].update(from_file.pop("recipe", {}))
            settings.update(from_file)
        for key in ("data", "val", "masks", "size", "iters", "batch_size", "accumulate", "workers", "seed",
                    "val_every", "checkpoint_every", "precision", "max_grad_norm"):
            if values.get(key) is not None:
                settings[key] = str(values[key]) if isinstance(values[key], Path) else values[key]
        if values["preset"] is not None:
            settings.setdefault("degradation", {})["preset"] = values["preset"]
        for _, key, _ in recipe_options:
            if values.get(key) is not None:
                settings["recipe"][key] = str(values[key]) if isinstance(values[key], Path) else values[key]
        if values["model_dir"] is not None:
            settings["recipe"]["model_dir"] = str(values["model_dir"])
        settings["out"] = str(values["out"] or Path("runs") / name)
        if "data" not in settings:
            raise click.UsageError("--data DIR is required (or set it in --config)")
        config = TrainConfig(**settings)
        trainer = Trainer(recipe, config, device=select_device(values["device"]), quiet=values["quiet"])
        resume = None
        if values["resume"]:
            resume = Path(config.out) / "last.pth"
            if not resume.exists():
                raise FacefixError(f"--resume: no checkpoint at {resume}")
        final = trainer.fit(resume=resume)
        if trainer.main_process:
            click.echo(f"trained {name} for {trainer.step} steps: {final}")

    options = [
        click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Folder of aligned high-quality faces (any size; resized to --size)."),
        click.option("--val", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Separate validation faces (default: a fixed 5% of --data)."),
        click.option("--masks", type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Parsing masks (PNG labels 0-18, same file stems)."),
        click.option("--size", type=click.IntRange(min=8), help=f"Training size in pixels (default {default_size})."),
        click.option("--config", "config_file", type=InputFile(path_type=Path),
                     help="JSON file with any TrainConfig field and a 'recipe' section."),
        click.option("--iters", type=click.IntRange(min=1),
                     help=f"Optimiser steps to train for, in all (default {defaults.ITERS}; a resumed run counts "
                          "the steps it already made)."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     help=f"Faces per step (default {defaults.BATCH_SIZE})."),
        click.option("--accumulate", type=click.IntRange(min=1), help="Micro-batches per step (gradient accumulation)."),
        click.option("--workers", type=click.IntRange(min=0),
                     help=f"Data-loading processes (default {defaults.WORKERS}; 0: in this process)."),
        click.option("--seed", type=int,
                     help=f"Seed of the data order, the degradations and the initial weights (default {defaults.SEED})."),
        click.option("--preset", help="Degradation preset (default: the network's own)."),
        click.option("--val-every", type=click.IntRange(min=0),
                     help=f"Score the validation faces every N steps (default {defaults.VAL_EVERY}; 0: never)."),
        click.option("--checkpoint-every", type=click.IntRange(min=0),
                     help=f"Write RUN_DIR/last.pth every N steps (default {defaults.CHECKPOINT_EVERY}; 0: only at "
                          "the end)."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
                     help=f"Training arithmetic (default {defaults.PRECISION}; bf16 and fp16 use autocast)."),
        click.option("--max-grad-norm", type=FiniteFloat(min=0), help="Clip gradient norms to this (0: off)."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path), help=f"Run folder (default runs/{name})."),
        click.option("--resume", is_flag=True, help="Continue from RUN_DIR/last.pth."),
        click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="auto", show_default=True,
                     help="Where training runs (auto: CUDA when torch sees a GPU)."),
        click.option("--model-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FACEFIX_MODEL_DIR",
                     help="Folder with loss and detector weights (VGG, ArcFace, RetinaFace)."),
        click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
                     help="CPU threads for torch and OpenCV; 0: the CPUs this process may use. Give 1 to run "
                          "two trainings side by side on two cores."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar (errors are still shown)."),
    ]
    for flag, key, kwargs in recipe_options:
        # a recipe's float options refuse NaN and infinity, and its files FIFOs, as the core's do
        if "type" in kwargs:
            kwargs = {**kwargs, "type": input_file(finite(kwargs["type"]))}
        options.append(click.option(flag, key, **kwargs))
    for option in reversed(options):
        command = option(command)
    return click.command(name=name, help=training.help or f"Train {card.title} on aligned faces.")(command)
