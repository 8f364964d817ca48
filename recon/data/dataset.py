"""Readers over format-v1 HDF5 files.

* ``PairDataset``: training pairs with SoftRas sampling (class uniform, then object uniform,
  then two views drawn independently). Item ``i`` is a pure function of ``(seed, i)``, so a run
  resumes exactly by skipping ``step * batch`` items and DDP ranks read disjoint index streams.
* ``iter_objects``: every object of a split with all its views, for evaluation.

Neither ever loads a whole file: data are read object by object (view by view for training).
The HDF5 handle is opened lazily per process, so DataLoader workers each get their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from recon.data.schema import DatasetFormatError, DatasetInfo, validate
from recon.errors import InputError

__all__ = ["PairDataset", "ObjectRecord", "iter_objects", "split_categories"]


def split_categories(info: DatasetInfo, split: str, categories: Sequence[str] | None = None) -> list[str]:
    """Category keys that have ``split`` with at least one object, optionally filtered by key or name."""
    have = info.objects(split)
    keys = [k for k in sorted(have) if have[k] > 0]
    if categories:
        wanted = set(categories)
        unknown = wanted - set(keys) - {info.categories[k] for k in keys}
        if unknown:
            valid = ", ".join(f"{k} ({info.categories[k]})" for k in keys)
            raise InputError(f"{info.path}: unknown categories {sorted(unknown)} in split {split!r}; valid: {valid}")
        keys = [k for k in keys if k in wanted or info.categories[k] in wanted]
    if not keys:
        raise InputError(f"{info.path}: split {split!r} has no objects")
    return keys


class _LazyH5:
    """An h5py handle opened on first use in each process (fork/spawn safe)."""

    def __init__(self, path: str):
        self.path = path
        self._f: h5py.File | None = None
        self._pid = -1

    def get(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid():
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._f

    def __getstate__(self) -> dict:
        return {"path": self.path, "_f": None, "_pid": -1}


class PairDataset(Dataset):
    """Training pairs ``(image_a, image_b, view_a, view_b, voxels, category)``.

    Args:
        path: format-v1 HDF5 file (validated on construction).
        split: "train" | "val" | "test".
        seed: sampling seed; item i is drawn from ``numpy.random.default_rng([seed, i])``.
        length: nominal epoch length (items are drawn with replacement, any index is valid).
        categories: optional subset of category keys or names.
        with_voxels: also read the 32^3 voxels (not needed for training).
    Items (dict):
        image_a, image_b: (4, S, S) float32 RGBA in [0, 1];
        view_a, view_b: int64 view indices; voxels: (32, 32, 32) uint8 (if requested);
        category: int64 index into ``self.categories``.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train", seed: int = 0, length: int = 1 << 30,
                 categories: Sequence[str] | None = None, with_voxels: bool = True):
        self.info = validate(path, require_splits=(split,))
        self.path = str(path)
        self.split = split
        self.seed = int(seed)
        self.length = int(length)
        self.with_voxels = with_voxels
        self.categories = split_categories(self.info, split, categories)
        counts = self.info.objects(split)
        self.num_objects = [counts[c] for c in self.categories]
        self.num_views = self.info.num_views
        self._h5 = _LazyH5(self.path)

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[int, int, int, int]:
        """The (category, object, view_a, view_b) drawn for item ``index``."""
        rng = np.random.default_rng([self.seed, int(index)])
        c = int(rng.integers(len(self.categories)))
        o = int(rng.integers(self.num_objects[c]))
        va, vb = (int(x) for x in rng.integers(self.num_views, size=2))
        return c, o, va, vb

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c, o, va, vb = self.sample(index)
        where = f"/{self.categories[c]}/{self.split}"
        try:
            grp = self._h5.get()[self.categories[c]][self.split]
            images = grp["images"]
            item = {
                "image_a": torch.from_numpy(images[o, va].astype(np.float32) / 255.0),
                "image_b": torch.from_numpy(images[o, vb].astype(np.float32) / 255.0),
                "view_a": torch.tensor(va, dtype=torch.int64),
                "view_b": torch.tensor(vb, dtype=torch.int64),
                "category": torch.tensor(c, dtype=torch.int64),
            }
            if self.with_voxels:
                item["voxels"] = torch.from_numpy(np.asarray(grp["voxels"][o], dtype=np.uint8))
        except (OSError, KeyError) as e:  # a corrupt chunk, or the file changed under us
            raise DatasetFormatError(f"{self.path}: {where}: object {o} is unreadable ({e})") from None
        return item


@dataclass
class ObjectRecord:
    """One object of a split with all its views (evaluation)."""

    category: str        # group key, e.g. "03001627"
    name: str            # human name, e.g. "chair"
    index: int           # row in /<category>/<split>
    object_id: str
    images: torch.Tensor  # (V, 4, S, S) float32 in [0, 1]
    voxels: torch.Tensor  # (32, 32, 32) bool


def iter_objects(path: str | os.PathLike, split: str = "test", categories: Sequence[str] | None = None,
                 max_per_category: int | None = None) -> Iterator[ObjectRecord]:
    """Yield every object of ``split`` (category by category), reading one object at a time."""
    info = validate(path, require_splits=(split,))
    keys = split_categories(info, split, categories)
    with h5py.File(path, "r") as f:
        for key in keys:
            grp = f[key][split]
            n = grp["images"].shape[0]
            if max_per_category is not None:
                n = min(n, max_per_category)
            for i in range(n):
                try:
                    oid = grp["object_ids"][i]
                    record = ObjectRecord(
                        category=key,
                        name=info.categories[key],
                        index=i,
                        object_id=oid.decode("utf-8", "replace") if isinstance(oid, bytes) else str(oid),
                        images=torch.from_numpy(grp["images"][i].astype(np.float32) / 255.0),
                        voxels=torch.from_numpy(np.asarray(grp["voxels"][i]).astype(bool)),
                    )
                except OSError as e:  # a corrupt chunk
                    raise DatasetFormatError(f"{path}: /{key}/{split}: object {i} is unreadable ({e})") from None
                yield record
