"""Facial-component boxes (left eye, right eye, mouth) for component losses.

Landmarks are detected once per training face with a registered detector and cached
in ``$FACEFIX_HOME/landmarks`` (every run on the same files reuses them: detecting 1,000
faces takes minutes on a CPU); faces where none is found (or when no detector weights
are on disk) fall back to the FFHQ template, which aligned faces follow closely.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from facefix.alignment import template

EYE_HALF_SIZE = 0.35  # × eye distance: the eye, its lid and brow corner
MOUTH_HALF_SIZE = 0.6  # × mouth width: lips with a margin


def component_boxes(landmarks: np.ndarray) -> np.ndarray:
    """``(5, 2)`` landmarks → ``(3, 4)`` boxes ``x1, y1, x2, y2``: left eye, right eye, mouth."""
    left_eye, right_eye, _, left_mouth, right_mouth = np.asarray(landmarks, np.float32)
    eye = EYE_HALF_SIZE * float(np.linalg.norm(right_eye - left_eye))
    mouth_centre = (left_mouth + right_mouth) / 2
    mouth = MOUTH_HALF_SIZE * float(np.linalg.norm(right_mouth - left_mouth))
    return np.array(
        [[*(left_eye - eye), *(left_eye + eye)], [*(right_eye - eye), *(right_eye + eye)],
         [*(mouth_centre - mouth), *(mouth_centre + mouth)]],
        np.float32,
    )


def flip_boxes(boxes: torch.Tensor, size: int, flipped: torch.Tensor) -> torch.Tensor:
    """Boxes of horizontally flipped faces: mirror x, and the left eye becomes the right."""
    mirrored = boxes.clone()
    mirrored[..., 0] = size - boxes[..., 2]
    mirrored[..., 2] = size - boxes[..., 0]
    mirrored = mirrored[:, [1, 0, 2]]
    return torch.where(flipped.view(-1, 1, 1), mirrored, boxes)


#: Detected landmarks are written to the cache every this many faces, so an interrupted
#: first run keeps most of its work.
LANDMARK_SAVE_EVERY = 100


def landmark_cache(size: int) -> Path:
    """The landmark cache for training faces of ``size`` pixels."""
    from facefix.weights import default_cache_dir

    return default_cache_dir().parent / "landmarks" / f"{size}px.json"


def file_key(path: Path) -> str:
    """A file's cache key: its resolved path, length and modification time, so an edited or
    replaced file is detected again while the same file in any run is not."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def detect_landmarks(files: list[Path], size: int, cache: Path | None = None, model_dir: Path | None = None,
                     quiet: bool = False) -> np.ndarray:
    """``(N, 5, 2)`` landmarks at the training size, cached in ``cache`` (JSON by
    :func:`file_key`; default :func:`landmark_cache`), with a progress bar for the missing."""
    from facefix.atomic import write_bytes_atomic

    cache = cache if cache is not None else landmark_cache(size)
    try:
        known: dict[str, list] = json.loads(cache.read_text()) if cache.exists() else {}
    except (OSError, ValueError):
        known = {}  # a damaged cache is detected again, not trusted
    keys = [file_key(path) for path in files]
    missing = [(key, path) for key, path in zip(keys, files) if key not in known]
    if missing:
        detector = _detector(model_dir)
        from tqdm import tqdm

        from facefix.image_io import read_image

        def save() -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(cache, json.dumps(known).encode())

        progress = tqdm(missing, desc=f"landmarks of {len(missing)} training faces (once; cached)", unit="face",
                        disable=quiet, file=sys.stderr)
        for count, (key, path) in enumerate(progress, 1):
            points = None
            if detector is not None:
                image = read_image(path).bgr8()
                faces = detector.detect(image)
                if faces:
                    face = max(faces, key=lambda f: f.area)
                    points = face.landmarks * (size / image.shape[0])
            known[key] = (points if points is not None else template(size)).tolist()
            if count % LANDMARK_SAVE_EVERY == 0:
                save()
        save()
    return np.array([known[key] for key in keys], np.float32)


def _detector(model_dir: Path | None):
    from facefix import compose
    from facefix.weights import WeightsResolver

    resolver = WeightsResolver(model_dir=model_dir, allow_download=False, progress=False)
    try:
        spec = compose.choose("detector", None, resolver)
        if not compose.weights_available(spec, resolver):
            raise LookupError
        return compose.build(spec, device="cpu", resolver=resolver)
    except Exception:
        print("facefix: no detector weights on disk: component boxes follow the FFHQ template", file=sys.stderr)
        return None
