"""Running facefix's own pipeline on Ray (``--engine ray``): the same steps as the local
engine (:mod:`facefix.pipeline`, :mod:`facefix.video`), placed on a cluster.

``ray`` is an optional extra (``pip install -c constraints.txt -e ".[ray]"``); only this
package's submodules import it, and only when ``--engine ray`` is chosen.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator
from contextlib import contextmanager

from facefix.errors import FacefixError, brief

RAY_MISSING = ('--engine ray needs the ray extra: pip install -c constraints.txt -e ".[ray]" '
               '(or pip install "ray[data]")')
#: What each CPU-side actor (decode/detect/align, paste/write) reserves: two of them and one
#: restorer fit a 2-CPU machine. Reservations only place work; they don't limit threads.
CPU_STAGE_SHARE = 0.5


@dataclass(frozen=True)
class EngineOptions:
    """``--engine`` and how Ray places the work."""

    engine: str = "local"  # "local" or "ray"
    address: str | None = None  # an existing cluster; None starts a local one
    actors: int = 1  # restorer actors
    num_cpus: float = 1.0  # per restorer actor
    num_gpus: float = 0.0  # per restorer actor

    @property
    def distributed(self) -> bool:
        return self.engine == "ray"


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FacefixError(RAY_MISSING) from None
    return ray


@contextmanager
def connected(options: EngineOptions) -> Iterator[Any]:
    """Ray, connected: to ``--address``, to the cluster this process already joined (tests),
    or to a local one started here and stopped afterwards."""
    ray = require_ray()
    # the workers' errors come back as facefix's own lines; Ray's start-up chatter and
    # C++ warnings would only bury them
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=options.address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    except Exception as error:
        where = options.address or "a local cluster"
        raise FacefixError(f"ray: can't start or join {where}: {brief(error)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def quiet_data_context() -> None:
    """facefix draws its own progress bar and summary; Ray Data's would interleave with them."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
    for name in ("ray.data", "ray.data._internal"):
        logging.getLogger(name).setLevel(logging.ERROR)
