"""How many CPU threads facefix's compute libraries use (``--threads``).

torch and onnxruntime size their pools by the machine's cores, which in a container or
under a CPU quota can be more than the process may use: the pools then fight for the
cores they share (the torch detector ran 5x slower that way). The default is the CPUs
this process may really use: its affinity mask, capped by a cgroup quota.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

_CHOSEN: list[int] = []  # the count in force, once set
_CAPPED: set[int] = set()  # counts already said to be too many


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup v2/v1 quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(count, quota) if quota else count)


def _cgroup_quota() -> int | None:
    try:
        fields = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return math.ceil(int(fields[0]) / int(fields[1]))
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return math.ceil(quota / period)
    except (OSError, ValueError):
        pass
    return None


def use_threads(count: int | None = None) -> int:
    """Size torch's and OpenCV's thread pools: ``count``, or :func:`available_cpus` when None or
    0; and, when ``count`` is given, onnxruntime's for sessions made from now on. Returns the
    count in force.

    onnxruntime's own default (its physical cores) stays unless asked: its results depend on
    its thread count, and every engine (local, each Ray worker) must give the same bytes."""
    available = available_cpus()
    chosen = int(count) if count else available
    if chosen > available:
        # more threads than CPUs only fight over them (--threads 1000 ran for minutes, 100000 crashed)
        if chosen not in _CAPPED:
            _CAPPED.add(chosen)
            print(f"facefix: note: --threads {chosen} is more than the {available} CPU(s) this process may use; "
                  f"using {available}", file=sys.stderr)
        chosen = available
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != chosen:
            torch.set_num_threads(chosen)
    else:  # read by torch's OpenMP pool when torch loads: no torch import just for this
        os.environ["OMP_NUM_THREADS"] = str(chosen)
    import cv2

    cv2.setNumThreads(chosen)
    _CHOSEN[:] = [chosen] if count else []
    return chosen


def session_threads() -> int | None:
    """The thread count for a new onnxruntime session, or None (onnxruntime's own) when
    none was given to :func:`use_threads`."""
    return _CHOSEN[0] if _CHOSEN else None
