"""The training engine every network plugin trains on.

A *recipe* (one per network) builds the models and optimisers and says what one
training step does; the engine owns everything else: data loading, G/D updates with
gradient accumulation and mixed precision, the EMA of the generator, validation
(PSNR/SSIM against the degraded inputs', image grids), CSV/TensorBoard logs, a tqdm
bar, checkpoints every N steps and on Ctrl-C, ``--resume``, and multi-process training under
``torchrun`` (gradients averaged across processes).
The final checkpoint (``final.pth``) is in the layout ``facefix restore --weights``
reads.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from facefix.atomic import atomic_path, remove_stale_temporaries
from facefix.checkpoints import read_state
from facefix.training import defaults
from facefix.errors import FacefixError
from facefix.image_io import write_image
from facefix.training.data import FaceDataset, list_faces, split, to_image
from facefix.training.degradations import PRESETS, DegradationConfig
from facefix.metrics.pixel import psnr, ssim


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in every checkpoint and in ``config.json``."""

    network: str
    data: str
    out: str
    val: str | None = None
    masks: str | None = None
    size: int = 512
    iters: int = defaults.ITERS
    batch_size: int = defaults.BATCH_SIZE
    accumulate: int = 1
    workers: int = defaults.WORKERS
    seed: int = defaults.SEED
    val_fraction: float = 0.05  # held out of --data when there is no --val folder
    val_count: int = 16  # validation faces evaluated (the first N, always the same)
    val_every: int = defaults.VAL_EVERY
    checkpoint_every: int = defaults.CHECKPOINT_EVERY
    log_every: int = 10
    ema_decay: float = 0.999
    #: ramp the EMA's decay up as min(ema_decay, (1 + step) / (10 + step)): a short run's
    #: EMA otherwise still holds its random start (0.99 keeps a third of it at step 100)
    ema_warmup: bool = False
    max_grad_norm: float = 0.0  # clip each optimiser's gradient norm to this (0: no clipping)
    precision: str = defaults.PRECISION  # fp32 | bf16 | fp16
    degradation: dict[str, Any] = field(default_factory=dict)  # {"preset": NAME, overrides...}
    #: every optimiser group's lr over the run, as a factor of its own: see :func:`lr_factor`
    #: (empty: the recipe's ``lr_schedule()``, else constant)
    lr_schedule: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)  # network-specific options

    @classmethod
    def from_file(cls, path: Path) -> dict[str, Any]:
        values = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise FacefixError(f"{path}: unknown config keys: {', '.join(unknown)}")
        return values

    def degradation_config(self, default_preset: str) -> DegradationConfig:
        options = dict(self.degradation)
        preset = options.pop("preset", default_preset)
        if preset not in PRESETS:
            raise FacefixError(f"unknown degradation preset {preset!r}; presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[preset].with_overrides(options)


SCHEDULES = ("constant", "multistep", "cosine")


def lr_factor(schedule: dict[str, Any], iteration: int, iters: int) -> float:
    """The factor on every group's initial lr at ``iteration`` (0-based) of ``iters``.

    * ``{"kind": "multistep", "milestones": [...], "gamma": 0.5}``: times ``gamma`` at each
      milestone passed (a milestone below 1 is a fraction of ``iters``): the paper's
      "piece-wise attenuation";
    * ``{"kind": "cosine", "warmup": N, "final_ratio": r}``: linear warm-up over N steps,
      then a cosine from 1 down to ``r``;
    * ``{}`` or ``{"kind": "constant"}``: 1.
    """
    kind = schedule.get("kind", "constant")
    if kind == "constant":
        return 1.0
    if kind == "multistep":
        milestones = [m * iters if m < 1 else m for m in schedule.get("milestones", ())]
        return float(schedule.get("gamma", 0.5)) ** sum(iteration >= m for m in milestones)
    if kind == "cosine":
        warmup = int(schedule.get("warmup", 0))
        if iteration < warmup:
            return (iteration + 1) / warmup
        progress = min(1.0, (iteration - warmup) / max(1, iters - warmup))
        floor = float(schedule.get("final_ratio", 0.0))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise FacefixError(f"unknown lr schedule {kind!r}; schedules: {', '.join(SCHEDULES)}")


def ema_decay_at(step: int, decay: float, warmup: bool) -> float:
    """The EMA's decay for the update after optimiser step ``step`` (0-based): ``decay``, or
    with ``warmup`` ``min(decay, (1 + step) / (10 + step))``, so that early on the average
    spans the steps made so far rather than mostly the random initial weights."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


class Diverged(FacefixError):
    """The run stopped because its losses or weights stopped being sensible numbers."""


class DivergenceGuard:
    """Watches every logged loss: a value that is not finite, or one that jumps far above
    its own running level, means the run has diverged.

    Each loss's level starts at its first value and follows an exponential moving
    average of its magnitude, with a floor so that losses resting near zero (a
    discriminator's) can still move. A value ``EXPLOSION`` times above the level is an
    explosion, from the second step on: a run can explode within its first few steps,
    and a level that had absorbed the explosion would never see it. Gradient norms are
    watched for finiteness only.
    """

    EXPLOSION = 100.0
    FLOOR = 0.1
    DECAY = 0.9

    def __init__(self) -> None:
        self.levels: dict[str, float] = {}

    def problem(self, logs: dict[str, float]) -> str | None:
        """What is wrong with this step's logs, or None."""
        for key, value in logs.items():
            if not math.isfinite(value):
                return f"{key} is {value}"
            level = self.levels.get(key)
            if key.endswith("_grad_norm") or level is None:
                continue
            if abs(value) > self.EXPLOSION * max(level, self.FLOOR):
                return f"{key} is {value:.3g}, {abs(value) / max(level, self.FLOOR):.3g} times its running level {level:.3g}"
        for key, value in logs.items():
            level = self.levels.get(key)
            self.levels[key] = abs(value) if level is None else self.DECAY * level + (1 - self.DECAY) * abs(value)
        return None


class Recipe(Protocol):
    """What a network plugin provides to train on the engine."""

    name: str
    default_preset: str
    needs_masks: bool

    def build_models(self, config: TrainConfig, device: str) -> dict[str, torch.nn.Module]:
        """Every trained module; ``"generator"`` is the one that is EMA'd, validated and exported."""

    def build_optimizers(self, models: dict[str, torch.nn.Module], config: TrainConfig) -> dict[str, torch.optim.Optimizer]: ...

    def train_step(self, batch: dict[str, torch.Tensor], models: dict[str, torch.nn.Module], step: "StepContext") -> None:
        """One iteration: call ``step.update(optimizer_name, loss_fn)`` for each G/D update."""

    def generate(self, generator: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The restored faces (RGB, [-1, 1]) for validation."""

    def export(self, generator: torch.nn.Module, config: TrainConfig) -> dict[str, Any]:
        """The checkpoint ``facefix restore --weights`` loads (from the EMA generator)."""

    # Optional: ``validate(trainer) -> {metric: value}`` replaces the image-quality
    # validation (a parser reports mean IoU instead of PSNR/SSIM); ``baseline(generator,
    # batch)`` with ``baseline_name`` replaces the degraded input as what validation
    # compares with (a super-resolver's bicubic enlargement: ``psnr_bicubic``, …).


class StepContext:
    """Runs one optimiser update over the micro-batches of a step.

    ``update(name, loss_fn)``: zero the grads of optimiser ``name``, then for each
    micro-batch call ``loss_fn(micro_batch) -> (loss, {component: value})`` under
    autocast, back-propagate ``loss / accumulate``, and step. The recipe decides the
    order of G and D updates; the engine decides precision and accumulation.
    """

    def __init__(self, engine: "Trainer", batch: dict[str, torch.Tensor], iteration: int):
        self.engine = engine
        self.iteration = iteration
        self.logs: dict[str, float] = {}
        n = engine.config.accumulate
        size = next(iter(batch.values())).shape[0]
        bounds = np.linspace(0, size, n + 1).astype(int)
        self.micro_batches = [
            {key: value[bounds[i] : bounds[i + 1]] for key, value in batch.items()} for i in range(n) if bounds[i + 1] > bounds[i]
        ]

    def update(self, name: str, loss_fn: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]],
               requires: list[torch.nn.Module] | None = None) -> None:
        engine = self.engine
        optimizer = engine.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        for micro in self.micro_batches:
            with engine.autocast():
                loss, parts = loss_fn(micro)
            engine.scaler.scale(loss / len(self.micro_batches)).backward()
            for key, value in parts.items():
                self.logs[key] = self.logs.get(key, 0.0) + float(value) / len(self.micro_batches)
        if engine.distributed:
            engine.average_gradients(optimizer)
        if engine.config.max_grad_norm > 0:
            # one bad batch (a rare extreme degradation) can't throw a network without
            # normalisation layers off course; the norm is logged to see how often it bites
            engine.scaler.unscale_(optimizer)
            parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(parameters, engine.config.max_grad_norm)
            self.logs[f"{name}_grad_norm"] = float(norm)
        engine.scaler.step(optimizer)
        engine.scaler.update()


def set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


def git_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Trainer:
    def __init__(self, recipe: Recipe, config: TrainConfig, device: str = "cpu", quiet: bool = False):
        self.recipe = recipe
        self.config = config
        self.quiet = quiet
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        if self.distributed and device.startswith("cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            torch.cuda.set_device(device)
        self.device = device
        self.out = Path(config.out)
        torch.manual_seed(config.seed)  # same initial weights on every rank (and broadcast below)

        degradation = config.degradation_config(recipe.default_preset)
        train_files = list_faces(Path(config.data))
        if config.val:
            val_files = list_faces(Path(config.val))
        else:
            train_files, val_files = split(train_files, config.val_fraction, config.seed)
        masks = Path(config.masks) if config.masks else None
        if recipe.needs_masks and masks is None:
            raise FacefixError(f"training {recipe.name} needs parsing masks: pass --masks DIR")
        self.train_set = FaceDataset(train_files, config.size, degradation, masks=masks, train=True, seed=config.seed)
        if len(train_files) < config.batch_size:  # drop_last would leave no batch: the loop would never end
            held = "" if config.val else f" ({len(val_files)} held out for validation)"
            raise FacefixError(f"{config.data}: {len(train_files)} training image(s){held}, fewer than the batch "
                               f"size {config.batch_size}: add faces or lower --batch-size")
        self.val_set = FaceDataset(val_files[: config.val_count], config.size, degradation,
                                   masks=masks if config.val is None else None, train=False, seed=config.seed)

        self.out.mkdir(parents=True, exist_ok=True)
        self.models = recipe.build_models(config, device)
        if hasattr(recipe, "setup"):
            recipe.setup(self)
        self.ema = copy.deepcopy(self.models["generator"]).eval()
        set_requires_grad(self.ema, False)
        if self.distributed:
            # Not DistributedDataParallel: GAN steps run a discriminator several times per
            # backward and R1 leaves some parameters without gradients, which DDP's reducer
            # rejects. Gradients are averaged explicitly before every optimiser step instead.
            for module in [*self.models.values(), self.ema]:
                for tensor in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(tensor.data, src=0)
        try:
            self.optimizers = recipe.build_optimizers(self.models, config)
        except ValueError as error:  # torch's "Invalid learning rate: -1.0"
            raise FacefixError(f"training {recipe.name}: {error} (--lr must be a positive number)") from None
        for name, optimizer in self.optimizers.items():
            for group in optimizer.param_groups:
                rate = group["lr"]
                if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
                    raise FacefixError(f"training {recipe.name}: the {name}'s learning rate must be a positive "
                                       f"number, got {rate!r} (--lr)")
        self.lr_schedule = dict(config.lr_schedule) or (recipe.lr_schedule() if hasattr(recipe, "lr_schedule") else {})
        lr_factor(self.lr_schedule, 0, config.iters)  # an unknown kind fails here, before any step
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        fp16 = config.precision == "fp16"
        self.scaler = torch.amp.GradScaler(device.split(":")[0], enabled=fp16)
        self.step = 0
        self.validated_step = -1
        self.history: list[dict[str, float]] = []

    # -- helpers ---------------------------------------------------------------------

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """All-reduce the gradients of ``optimizer``'s parameters across ranks (mean)."""
        world = dist.get_world_size()
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                # Which gradients exist depends only on the code path, the same on every rank;
                # leaving None alone keeps Adam from moving parameters the loss didn't touch.
                if parameter.grad is None:
                    continue
                dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
                parameter.grad /= world

    def autocast(self):
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = ema_decay_at(self.step, self.config.ema_decay, self.config.ema_warmup)
        source = self.models["generator"]
        for ema_param, param in zip(self.ema.parameters(), source.parameters()):
            ema_param.lerp_(param.detach(), 1.0 - decay)
        for ema_buffer, buffer in zip(self.ema.buffers(), source.buffers()):
            ema_buffer.copy_(buffer)

    # -- checkpoints -----------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": asdict(self.config),
            "models": {name: module.state_dict() for name, module in self.models.items()},
            "ema": self.ema.state_dict(),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "git_revision": git_revision(),
            "data": {"train_faces": len(self.train_set), "val_faces": len(self.val_set), "data": self.config.data},
        }

    def _diverged(self, what: str, step: int) -> Diverged:
        last = self.out / "last.pth"
        kept = (f"the last good checkpoint, {last}, is kept (resume with --resume after changing the settings)"
                if last.exists() else "no checkpoint was written")
        return Diverged(f"training {self.recipe.name} diverged at step {step}: {what}; stopped, {kept}; "
                        "try a lower --lr, or clip gradients with --max-grad-norm 1")

    def _check_weights(self) -> None:
        """A checkpoint is never written with weights that are no longer numbers."""
        for name, module in {**self.models, "ema": self.ema}.items():
            for parameter in module.parameters():
                if not torch.isfinite(parameter).all():
                    raise self._diverged(f"the {name}'s weights are no longer finite", self.step)

    def save(self, name: str) -> Path:
        self._check_weights()
        path = self.out / name
        with atomic_path(path) as temporary:
            torch.save(self.checkpoint_state(), temporary)
        return path

    def resume(self, path: Path) -> None:
        state = read_state(path)  # a corrupt, empty or unsafe file: one line naming it
        try:
            saved_network = state.get("config", {}).get("network")
            if saved_network and saved_network != self.config.network:
                raise ValueError(f"it is a {saved_network} run's")
            for name, module in self.models.items():
                if name not in state["models"]:
                    raise ValueError(f"it holds no {name}")
                module.load_state_dict(state["models"][name])
            self.ema.load_state_dict(state["ema"])
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as error:
            why = str(error) if isinstance(error, ValueError) else (
                "its weights don't fit this run's networks" if isinstance(error, RuntimeError) else
                "not a facefix training checkpoint")
            raise FacefixError(f"--resume {path}: can't continue this {self.recipe.name} run from it ({why}); "
                               "resume with the network and settings it was made with, or start a new --out") from None
        for name, optimizer in self.optimizers.items():
            # Adam's moments come from the checkpoint; its hyperparameters (lr, betas) from
            # this run's config, so a resumed run can change them (e.g. a fine-tuning phase).
            configured = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            optimizer.load_state_dict(state["optimizers"][name])
            for group, settings in zip(optimizer.param_groups, configured):
                group.update(settings)
        self.step = int(state["step"])

    # -- validation ------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if len(self.val_set) == 0:
            return {}
        self.validated_step = self.step
        if hasattr(self.recipe, "validate"):
            result = self.recipe.validate(self)
            self._append_csv("val.csv", {"step": self.step, **result})
            return result
        # what the network is measured against: the degraded input, or the recipe's own
        # baseline (a super-resolver's is its input enlarged bicubically)
        suffix, baseline = getattr(self.recipe, "baseline_name", "lq"), getattr(self.recipe, "baseline", None)
        scores = {"psnr": [], "ssim": [], f"psnr_{suffix}": [], f"ssim_{suffix}": []}
        rows = []
        loader = DataLoader(self.val_set, batch_size=max(1, self.config.batch_size), shuffle=False, num_workers=0)
        for batch in loader:
            batch = {key: value.to(self.device) for key, value in batch.items()}
            with self.autocast():
                output = self.recipe.generate(self.ema, batch).float()
            reference = batch["lq"] if baseline is None else baseline(self.ema, batch)
            for i in range(output.shape[0]):
                restored, degraded, target = to_image(output[i]), to_image(reference[i]), to_image(batch["hq"][i])
                scores["psnr"].append(psnr(restored, target))
                scores["ssim"].append(ssim(restored, target))
                scores[f"psnr_{suffix}"].append(psnr(degraded, target))
                scores[f"ssim_{suffix}"].append(ssim(degraded, target))
                if len(rows) < 4:
                    rows.append(np.concatenate([degraded, restored, target], axis=1))
        result = {key: float(np.mean(values)) for key, values in scores.items()}
        write_image(self.out / "val" / f"step_{self.step:07d}.png", np.concatenate(rows, axis=0))
        self._append_csv("val.csv", {"step": self.step, **result})
        return result

    def _append_csv(self, name: str, row: dict[str, float]) -> None:
        """Add a row; losses that appear only on some steps (R1) get their own column."""
        path = self.out / name
        rows = []
        if path.exists():
            with path.open(newline="") as stream:
                rows = list(csv.DictReader(stream))
        rows.append(row)
        columns: list[str] = []
        for existing in rows:
            columns.extend(key for key in existing if key not in columns)
        with path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def _report(self, label: str, scores: dict[str, float]) -> None:
        if not scores or self.quiet:
            return
        suffix = getattr(self.recipe, "baseline_name", "lq")
        baseline = "degraded" if suffix == "lq" else suffix
        if all(key in scores for key in ("psnr", "ssim", f"psnr_{suffix}", f"ssim_{suffix}")):
            text = (f"val PSNR {scores['psnr']:.2f} dB ({baseline} {scores[f'psnr_{suffix}']:.2f}), SSIM "
                    f"{scores['ssim']:.4f} ({baseline} {scores[f'ssim_{suffix}']:.4f})")
        else:
            text = "val " + ", ".join(f"{key} {value:.4g}" for key, value in list(scores.items())[:3])
        tqdm.write(f"{label}: {text}", file=sys.stderr)

    # -- the loop --------------------------------------------------------------------

    def fit(self, resume: Path | None = None) -> Path:
        config = self.config
        if self.main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out)  # a checkpoint a killed run was writing
            (self.out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
        if resume is not None:
            self.resume(resume)
        writer = None
        if self.main_process:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(self.out / "tensorboard"))
            except Exception:  # tensorboard is optional
                writer = None
        sampler = (DistributedSampler(self.train_set, seed=config.seed) if self.distributed
                   else RandomSampler(self.train_set, generator=torch.Generator().manual_seed(config.seed)))
        bar = tqdm(total=config.iters, initial=self.step, desc=f"train {self.recipe.name}", unit="it",
                   disable=self.quiet or not self.main_process, file=sys.stderr)
        epoch = self.step * config.batch_size // max(1, len(self.train_set))
        started = time.perf_counter()
        if self.main_process and config.val_every and self.step == 0:
            self._report("before training", self.validate())  # the baseline every later row compares with
        guard = DivergenceGuard()
        try:
            while self.step < config.iters:
                self.train_set.epoch = epoch
                if isinstance(sampler, DistributedSampler):
                    sampler.set_epoch(epoch)
                loader = DataLoader(self.train_set, batch_size=config.batch_size, sampler=sampler,
                                    num_workers=config.workers, drop_last=True, pin_memory=self.device != "cpu")
                for batch in loader:
                    if self.step >= config.iters:
                        break
                    batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
                    context = StepContext(self, batch, self.step)
                    factor = lr_factor(self.lr_schedule, self.step, config.iters)
                    for optimizer in self.optimizers.values():
                        for group in optimizer.param_groups:
                            group["lr"] = group["initial_lr"] * factor
                    for module in self.models.values():
                        module.train()
                    self.recipe.train_step(batch, self.models, context)
                    problem = guard.problem(context.logs)
                    if problem is not None:
                        raise self._diverged(problem, self.step + 1)  # steps count from 1, as in log.csv
                    self._update_ema()
                    self.step += 1
                    bar.update(1)
                    if self.main_process and (self.step % config.log_every == 0 or self.step == 1):
                        row = {"step": self.step, "seconds": round(time.perf_counter() - started, 2), **context.logs}
                        self._append_csv("log.csv", row)
                        self.history.append(row)
                        bar.set_postfix({key: f"{value:.3g}" for key, value in list(context.logs.items())[:4]})
                        if writer is not None:
                            for key, value in context.logs.items():
                                writer.add_scalar(f"train/{key}", value, self.step)
                    if self.main_process and config.val_every and self.step % config.val_every == 0:
                        scores = self.validate()
                        self._report(f"step {self.step}", scores)
                        if writer is not None:
                            for key, value in scores.items():
                                writer.add_scalar(f"val/{key}", value, self.step)
                    if self.main_process and config.checkpoint_every and self.step % config.checkpoint_every == 0:
                        self.save("last.pth")
                epoch += 1
        except KeyboardInterrupt:
            if self.main_process:
                path = self.save("last.pth")
                print(f"\ninterrupted at step {self.step}: saved {path}; continue with --resume", file=sys.stderr)
            raise
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        final = self.out / "final.pth"
        if self.main_process:
            self.save("last.pth")
            if config.val_every and self.validated_step != self.step:
                self._report("final", self.validate())
            with atomic_path(final) as temporary:
                torch.save(self.recipe.export(self.ema, config), temporary)
        if self.distributed:
            dist.barrier()
        return final
