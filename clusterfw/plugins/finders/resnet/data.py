"""Training, validation and test cutouts for the ``resnet`` finder, simulated once and cached.

The three splits come from *disjoint simulated patches*: each split draws its patches from its
own seed stream (``SeedSequence([seed, split_index])``), so no piece of sky — and no halo — is
shared between them. This is the simulation counterpart of DeepSZ's split by right ascension.

- ``train``: :func:`clusterfw.sim.make_cutouts` in ``balanced`` mode (positives are qualifying
  halos at a random offset inside the central 6' box; negatives are random windows with no
  qualifying halo in the box; halo abundance boosted so positives are plentiful). The trainer
  re-weights the two classes epoch by epoch (dynamic stratified sampling), so the stored
  fraction only sets how many distinct examples of each class exist.
- ``val`` and ``test``: ``grid`` mode — DeepSZ's 6'-stride tiling of whole patches at the natural
  abundance, hence the natural class ratio. Model selection and Platt scaling use ``val``.

Shards are ``.npz`` files written atomically by :func:`clusterfw.sim.write_cutout_shards`, plus a
``manifest.json`` per split recording the parameters; a cached split is reused only when its
manifest matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
META_KEYS = ("ra", "dec", "patch", "halo_mvir", "halo_z", "halo_dx_arcmin", "halo_dy_arcmin")


@dataclass
class SplitSpec:
    """How one split is simulated (all arguments of :func:`clusterfw.sim.make_cutouts`).

    ``mass_definition``, ``mass_cut`` and ``z_min`` define the labels (see
    :data:`clusterfw.sim.cutouts.LABELS`); ``setting`` names the simulator setting every patch
    draws its parameters from (:data:`clusterfw.sim.settings.SETTINGS`).
    """

    n: int
    mode: str
    positive_fraction: float = 0.5
    patch_arcmin: float = 96.0
    mass_cut: float = 2e14
    z_min: float = 0.25
    chunk_size: int = 4096
    mass_definition: str = "mvir"
    setting: str = "default"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able parameters."""
        return dict(self.__dict__)


@dataclass
class CutoutSet:
    """Cutouts of one split held in memory.

    Attributes
    ----------
    images : numpy.ndarray
        ``(n, 3, 32, 32)`` float32 µK_CMB.
    labels : numpy.ndarray
        ``(n,)`` int8.
    meta : dict of str to numpy.ndarray
        Per-cutout columns (see :data:`META_KEYS`); ``patch`` is unique within the split.
    bands : tuple of str
    """

    images: np.ndarray
    labels: np.ndarray
    meta: dict[str, np.ndarray]
    bands: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.size)


def split_seed(seed: int, split: str) -> np.random.SeedSequence:
    """The seed stream of ``split`` (disjoint patches per split)."""
    return np.random.SeedSequence([int(seed), SPLITS.index(split)])


def ensure_split(
    directory: str | Path, split: str, spec: SplitSpec, seed: int, *, progress: bool = True
) -> Path:
    """Simulate ``split`` into ``directory/split`` unless a matching cache is there.

    Returns
    -------
    Path
        The split's folder.
    """
    from clusterfw.core.atomic import write_atomic
    from clusterfw.sim import write_cutout_shards

    folder = Path(directory) / split
    manifest = {"split": split, "seed": int(seed), **spec.as_dict()}
    mpath = folder / "manifest.json"
    if mpath.exists():
        try:
            if json.loads(mpath.read_text()) == manifest:
                return folder
        except json.JSONDecodeError:
            pass
    for old in folder.glob(f"{split}_*.npz"):
        old.unlink()
    rng = np.random.default_rng(split_seed(seed, split))
    kwargs: dict[str, Any] = dict(
        mode=spec.mode,
        patch_arcmin=spec.patch_arcmin,
        mass_cut=spec.mass_cut,
        mass_definition=spec.mass_definition,
        z_min=spec.z_min,
        with_y=False,
        setting=spec.setting,
    )
    if spec.mode == "balanced":
        kwargs["positive_fraction"] = spec.positive_fraction
    if progress:
        import sys

        print(
            f"simulating {spec.n} {split} cutouts ({spec.mode}, setting {spec.setting}) "
            f"into {folder}",
            file=sys.stderr,
        )
    write_cutout_shards(folder, spec.n, rng, chunk_size=spec.chunk_size, prefix=split, **kwargs)
    write_atomic(mpath, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    return folder


def load_split(folder: str | Path) -> CutoutSet:
    """Read every shard of a split folder (no pickle).

    ``patch`` indices restart in each shard; they are offset here so they are unique.
    """
    folder = Path(folder)
    shards = sorted(folder.glob("*.npz"))
    if not shards:
        raise FileNotFoundError(f"no .npz shards in {folder}")
    images, labels = [], []
    meta: dict[str, list[np.ndarray]] = {k: [] for k in META_KEYS}
    bands: tuple[str, ...] = ()
    offset = 0
    for path in shards:
        with np.load(path, allow_pickle=False) as z:
            images.append(z["images"].astype(np.float32, copy=False))
            labels.append(z["labels"].astype(np.int8))
            bands = tuple(str(b) for b in z["bands"])
            for k in META_KEYS:
                v = z[f"meta_{k}"]
                if k == "patch":
                    v = v + offset
                meta[k].append(v)
            offset = int(meta["patch"][-1].max()) + 1
    return CutoutSet(
        np.concatenate(images),
        np.concatenate(labels),
        {k: np.concatenate(v) for k, v in meta.items()},
        bands,
    )
