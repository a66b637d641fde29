"""``facefix restore --engine ray``: the local engine's steps as a Ray Data pipeline.

    plan (driver, input order) ─▶ prepare: decode, detect, align (CPU actors)
      ─▶ restore: parser + restorer, weights loaded once (actor pool, --actors, GPUs)
      ─▶ write: paste, encode, atomic write (CPU actors) ─▶ summary (driver)

Every step is the local engine's own (:class:`~facefix.pipeline.ImageStages`,
:class:`~facefix.pipeline.FaceBatcher`); only where they run differs. Jobs travel between
steps pickled: they hold the image and its aligned faces, which Arrow can't describe.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from ray.data import ActorPoolStrategy
from tqdm import tqdm

from facefix.compose import ComponentSelection, rebuild
from facefix.distributed import CPU_STAGE_SHARE, EngineOptions, connected, quiet_data_context
from facefix.pipeline import (
    FaceBatcher,
    ImageStages,
    PipelineOptions,
    Summary,
    finish_job,
    plan_images,
    start_summary,
)


class PrepareActor:
    """Decode, detect and align; the detector is built once per actor."""

    def __init__(self, selection: ComponentSelection, names: dict[str, str], options: PipelineOptions,
                 sizes: tuple[int, int, Any]):
        components = rebuild(selection, names, ("detector",))
        self.stages = ImageStages(options, *sizes, detector=components.get("detector"))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        jobs = [pickle.dumps(self.stages.prepare(pickle.loads(task))) for task in batch["task"]]
        return pd.DataFrame({"index": batch["index"], "job": jobs})


class RestoreActor:
    """The parser and restorer, loaded once; the faces of a batch of images share restorer batches."""

    def __init__(self, selection: ComponentSelection, names: dict[str, str], batch_size: int):
        components = rebuild(selection, names, ("restorer", "parser"))
        self.restorer = components["restorer"]
        self.parser = components.get("parser")
        self.batch_size = batch_size

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        jobs = [pickle.loads(job) for job in batch["job"]]
        seconds: dict[str, float] = defaultdict(float)

        def timed(stage: str, function: Callable[..., Any], *args: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args)
            finally:
                seconds[stage] += time.perf_counter() - started

        batcher = FaceBatcher(self.restorer, self.parser, self.batch_size, timed)
        for job in jobs:
            batcher.add(job)
        batcher.drain(final=True)
        if jobs:  # the batch's network time, counted once
            for stage, value in seconds.items():
                jobs[0].stage_seconds[stage] += value
        return pd.DataFrame({"index": batch["index"], "job": [pickle.dumps(job) for job in jobs]})


class WriteActor:
    """Paste back, encode and write atomically; the result row is all the driver needs."""

    def __init__(self, selection: ComponentSelection, names: dict[str, str], options: PipelineOptions,
                 sizes: tuple[int, int, Any]):
        components = rebuild(selection, names, ("blender", "upsampler"))
        self.stages = ImageStages(options, *sizes, blender=components.get("blender"),
                                  upsampler=components.get("upsampler"))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for job in (pickle.loads(job) for job in batch["job"]):
            error = self.stages.write(job)
            rows.append({"source": pickle.dumps(job.task.source), "faces": len(job.faces), "error": error or "",
                         "seconds": pickle.dumps(dict(job.stage_seconds))})
        return pd.DataFrame(rows)


def restore_images(files: list[tuple[Path | str, Path]], out_dir: Path, selection: ComponentSelection,
                   names: dict[str, str], sizes: tuple[int, int, Any], options: PipelineOptions,
                   engine: EngineOptions, report: Callable[[str], None] | None = None) -> Summary:
    """Restore ``files`` into ``out_dir`` on Ray; the summary the local engine would give."""
    report = report or (lambda message: tqdm.write(message, file=sys.stderr))
    summary = Summary()
    plan = plan_images(files, out_dir, options)
    progress = tqdm(total=len(files), desc="restore (ray)", unit="img", disable=options.quiet, file=sys.stderr)
    start_summary(summary, plan, report, progress)
    if plan.tasks:
        with connected(engine) as ray:
            quiet_data_context()
            cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
            cpu_pool = ActorPoolStrategy(min_size=1, max_size=max(1, cpus))
            items = [{"index": index, "task": pickle.dumps(task)} for index, task in enumerate(plan.tasks)]
            dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 1000))
            dataset = dataset.map_batches(PrepareActor, batch_size=1, batch_format="pandas", compute=cpu_pool,
                                          num_cpus=CPU_STAGE_SHARE,
                                          fn_constructor_kwargs=dict(selection=selection, names=names,
                                                                     options=options, sizes=sizes))
            dataset = dataset.map_batches(RestoreActor, batch_size=max(1, options.faces.batch_size),
                                          batch_format="pandas", compute=ActorPoolStrategy(size=engine.actors),
                                          num_cpus=engine.num_cpus, num_gpus=engine.num_gpus or None,
                                          fn_constructor_kwargs=dict(selection=selection, names=names,
                                                                     batch_size=options.faces.batch_size))
            dataset = dataset.map_batches(WriteActor, batch_size=1, batch_format="pandas", compute=cpu_pool,
                                          num_cpus=CPU_STAGE_SHARE,
                                          fn_constructor_kwargs=dict(selection=selection, names=names,
                                                                     options=options, sizes=sizes))
            for row in dataset.iter_rows():
                finish_job(summary, pickle.loads(row["source"]), int(row["faces"]), pickle.loads(row["seconds"]),
                           row["error"] or None, options.quiet, report)
                progress.update(1)
    progress.close()
    return summary
