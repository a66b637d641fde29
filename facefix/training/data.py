"""Training data: aligned high-quality faces, degraded on the fly into (LQ, HQ) pairs.

Training samples are random every epoch (augmentation and degradation draw from a
generator seeded by the run seed, the epoch and the index, so a run is reproducible).
Validation samples are fixed: ``degrade_for(seed, index)`` gives the same LQ face
whatever the order, worker or machine.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from facefix.errors import FacefixError, InputError
from facefix.image_io import IMAGE_EXTENSIONS, read_image
from facefix.training.degradations import DegradationConfig, degrade_pair, rng_for

# Horizontal flips swap the left/right parsing classes (CelebAMask-HQ order).
_FLIP_LABELS = np.arange(19, dtype=np.uint8)
for _left, _right in ((4, 5), (6, 7), (8, 9)):
    _FLIP_LABELS[_left], _FLIP_LABELS[_right] = _right, _left


def list_faces(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise InputError(folder, "no training images found (.jpg, .png, .webp, ... in it or its sub-folders)")
    return files


def split(files: list[Path], val_fraction: float, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """A stable train/val split: a file's side depends only on its name and the seed."""
    if val_fraction <= 0:
        return files, []

    def bucket(path: Path) -> float:
        digest = hashlib.sha256(f"{seed}:{path.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranked = sorted(files, key=bucket)
    # at least one validation face whenever there are two faces to split
    count = max(sum(bucket(path) < val_fraction for path in files), 1 if len(files) > 1 else 0)
    val = set(ranked[:count])
    return [path for path in files if path not in val], [path for path in files if path in val]


def mask_path(masks: Path, image: Path) -> Path:
    return masks / f"{image.stem}.png"


def read_labels(path: Path) -> np.ndarray:
    """A parsing mask: ``H x W`` uint8 class labels from a single-channel or palette PNG."""
    if not Path(path).is_file():
        raise InputError(path, "no parsing mask for this face (--masks must hold one per image, same name)")
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2:
        from PIL import Image as PILImage  # palette PNGs: cv2 may expand them to colour

        try:
            with PILImage.open(path) as opened:
                labels = np.array(opened)
        except Exception as error:
            raise InputError(path, f"unreadable parsing mask ({type(error).__name__})") from None
    return np.asarray(labels).astype(np.uint8)


def paired_random_crop(first: torch.Tensor, second: torch.Tensor, crop: int | None,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random ``crop`` x ``crop`` square of each image of two aligned batches (one
    offset per image); both unchanged when ``crop`` is 0/None or not smaller than them."""
    size = first.shape[-1]
    if not crop or crop >= size:
        return first, second
    offsets = torch.randint(0, size - crop + 1, (first.shape[0], 2), generator=generator).tolist()
    return (torch.stack([image[:, y:y + crop, x:x + crop] for image, (y, x) in zip(first, offsets)]),
            torch.stack([image[:, y:y + crop, x:x + crop] for image, (y, x) in zip(second, offsets)]))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """BGR uint8 HxWx3 → RGB float (3, H, W) in [-1, 1]."""
    rgb = image[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """RGB float (3, H, W) in [-1, 1] → BGR uint8 HxWx3."""
    array = ((tensor.detach().float().clamp(-1, 1).cpu().numpy() + 1.0) * 127.5).round().astype(np.uint8)
    return np.ascontiguousarray(array.transpose(1, 2, 0)[:, :, ::-1])


#: Files already warned about in this process (a data-loader worker has its own).
_WARNED: set[int] = set()


@dataclass
class FaceDataset(Dataset):
    """``files``: aligned HQ faces; each item is ``{"hq", "lq", "index"[, "mask"]}``."""

    files: list[Path]
    size: int
    degradation: DegradationConfig
    masks: Path | None = None
    train: bool = True
    seed: int = 0
    flip: bool = True
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.files[index]
        image = read_image(path).bgr8()
        if image.shape[:2] != (self.size, self.size):
            shrinking = image.shape[0] > self.size
            image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        labels = None
        if self.masks is not None:
            labels = read_labels(mask_path(self.masks, path))
            labels = cv2.resize(labels, (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        return image, labels

    def _load_readable(self, index: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        """The item at ``index``, or the next readable one: one bad file among thousands is
        skipped with a warning (once per file) instead of ending the run."""
        for offset in range(len(self.files)):
            candidate = (index + offset) % len(self.files)
            try:
                return (candidate, *self._load(candidate))
            except FacefixError as error:
                if candidate not in _WARNED:
                    _WARNED.add(candidate)
                    print(f"facefix: warning: skipping a training image: {error}", file=sys.stderr)
        raise InputError(self.files[0].parent, "none of the training images could be read")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index, hq, labels = self._load_readable(index)
        flipped = False
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.flip and rng.random() < 0.5:
                flipped = True
                hq = np.ascontiguousarray(hq[:, ::-1])
                if labels is not None:
                    labels = _FLIP_LABELS[np.ascontiguousarray(labels[:, ::-1])]
            hq, lq = degrade_pair(hq, self.degradation, rng)  # the target turns gray with the LQ when asked
        else:
            hq, lq = degrade_pair(hq, self.degradation, rng_for(self.seed, index))
        item = {"hq": to_tensor(hq), "lq": to_tensor(lq), "index": torch.tensor(index), "flipped": torch.tensor(flipped)}
        if labels is not None:
            item["mask"] = torch.from_numpy(labels.astype(np.int64))
        return item
