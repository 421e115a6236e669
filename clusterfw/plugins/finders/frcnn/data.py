"""Training fields of ``frcnn``: ``clusterfw simulate optical-fields`` shards at the working scale.

A shard folder (:mod:`clusterfw.sim.shards.detection`) holds g, r, i fields in nanomaggies per
stored pixel and each labelled cluster's box in the stored pixels' edge frame. :func:`load_fields`
brings every field to the working scale (:func:`.prep.to_working_scale`), stretches it
(:func:`.prep.stretch`) and scales the boxes by the same factor.

Box rule (the simulator's, :mod:`clusterfw.sim.shards.detection`): a square box centred on the
halo's true centre holding 80 % of the cluster's bright members (r < m*(z) + 2) in Chebyshev
distance, the projected R500 when it has fewer than 5 of them, at least 2 PSF FWHM, clipped to
the field. Every halo with M500c ≥ 1e14 Msun at 0.05 < z < 0.7 in a field is labelled; none
below. ``box_centre="bcg"`` moves each box, its size kept, onto the cluster's simulated BCG
(:func:`clusterfw.sim.shards.detection.bcg_positions`), clipped to the field: Deep-CEE's
ground truth (its boxes are centred on the catalogue's BCG, Chan & Stott 2019 §2.2), which
differs from the halo centre for the simulator's miscentred BCGs.

:func:`augment` draws one training window: a random ``window``-pixel crop (an offset of up to
the field's spare pixels), a random flip and a random multiple of 90°; a box whose centre leaves
the crop is dropped, the others are clipped to it. Seeing and depth are drawn per field by the
simulator (``--seeing-range``, ``--depth-range``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clusterfw.plugins.finders.frcnn.prep import PIXEL_ARCSEC, stretch, to_working_scale


@dataclass
class FieldSet:
    """Fields at the working scale with their labelled clusters.

    Attributes
    ----------
    x : numpy.ndarray
        ``(n, 3, ny, nx)`` float16 stretched g, r, i.
    boxes : list of numpy.ndarray
        Per field ``(k, 4)`` float32 ``(x0, y0, x1, y1)`` in working pixels (edge frame).
    centres : list of numpy.ndarray
        Per field ``(k, 2)`` true centres ``(x, y)`` in working pixels (edge frame): the halo's,
        or the BCG's with ``box_centre="bcg"``.
    z, m500c : list of numpy.ndarray
        Per field ``(k,)`` redshift and mass of the labelled clusters.
    raw : numpy.ndarray or None
        ``(n, 3, NY, NX)`` float16 stored images in nanomaggies (kept for photo-z tests).
    raw_pixel_arcsec : float
        Pixel scale of ``raw``.
    factor : float
        Working pixel / stored pixel.
    """

    x: np.ndarray
    boxes: list[np.ndarray]
    centres: list[np.ndarray]
    z: list[np.ndarray]
    m500c: list[np.ndarray]
    raw: np.ndarray | None = None
    raw_pixel_arcsec: float = 0.0
    factor: float = 1.0
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def shard_pixel_arcsec(directory: str | Path) -> float:
    """Stored pixel scale of a shard folder (preset pixel × rebin, from its manifest)."""
    from clusterfw.sim.optical import get_preset
    from clusterfw.sim.shards.common import read_manifest

    cfg = read_manifest(directory)["config"]
    return float(get_preset(cfg["preset"]).pixel_arcsec) * int(cfg["rebin"])


BOX_CENTRES = ("halo", "bcg")


def recentre_boxes(
    boxes: np.ndarray, centres: np.ndarray, new: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """``boxes`` ``(k, 4)`` moved by ``new − centres`` (their size kept), clipped to an image of
    ``shape`` = ``(ny, nx)`` pixels (edge frame)."""
    d = np.asarray(new, float) - np.asarray(centres, float)
    b = np.asarray(boxes, float) + np.column_stack([d[:, 0], d[:, 1], d[:, 0], d[:, 1]])
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, shape[1])
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, shape[0])
    return b.astype(np.float32)


def load_fields(
    directories: list[str | Path], keep_raw: bool = False, box_centre: str = "halo"
) -> FieldSet:
    """Read shard folders into one :class:`FieldSet` (checks every shard's sha256).

    ``box_centre``: ``"halo"`` (the stored boxes) or ``"bcg"`` (moved onto the simulated BCG;
    module docstring).
    """
    from clusterfw.core.errors import InputError
    from clusterfw.sim.shards.common import iter_shards, read_manifest

    if box_centre not in BOX_CENTRES:
        raise ValueError(f"box_centre must be one of {BOX_CENTRES} (got {box_centre!r})")

    xs, boxes, centres, zs, ms, raws = [], [], [], [], [], []
    pix0 = None
    factor = 1.0
    for d in directories:
        manifest = read_manifest(d)
        if manifest.get("kind") != "optical-fields":
            raise InputError(str(d), f"not an optical-fields shard folder ({manifest.get('kind')})")
        if list(manifest["config"]["bands"]) != ["g", "r", "i"]:
            raise InputError(str(d), "the fields must have the bands g, r, i")
        pix = shard_pixel_arcsec(d)
        if pix0 is not None and abs(pix / pix0 - 1) > 1e-6:
            raise InputError(str(d), f"pixel scale {pix:g}\" differs from the first folder's")
        pix0 = pix
        bcgs = None
        if box_centre == "bcg":
            from clusterfw.sim.shards.detection import bcg_positions

            bcgs = iter(bcg_positions(d))
        for shard in iter_shards(d):
            for j in range(shard["images"].shape[0]):
                img = shard["images"][j].astype(np.float32)
                work, factor = to_working_scale(img, pix)
                xs.append(stretch(work).astype(np.float16))
                k = int(shard["n_boxes"][j])
                b = shard["boxes"][j, :k].astype(float)
                c = np.stack([shard["box_x"][j, :k], shard["box_y"][j, :k]], axis=1)
                if bcgs is not None:
                    new = next(bcgs)
                    b = recentre_boxes(b, c, new, img.shape[1:])
                    c = new
                boxes.append((b / factor).astype(np.float32))
                centres.append(np.asarray(c, float) / factor)
                zs.append(shard["box_z"][j, :k].astype(float))
                ms.append(shard["box_m500c"][j, :k].astype(float))
                if keep_raw:
                    raws.append(shard["images"][j])
    if not xs:
        raise InputError(str(directories[0]), "no fields")
    return FieldSet(
        x=np.stack(xs),
        boxes=boxes,
        centres=centres,
        z=zs,
        m500c=ms,
        raw=np.stack(raws) if keep_raw else None,
        raw_pixel_arcsec=float(pix0 or 0.0),
        factor=factor,
        sources=[str(d) for d in directories],
    )


def crop_boxes(boxes: np.ndarray, x0: int, y0: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes shifted into a crop at ``(x0, y0)``; those whose centre leaves it are dropped.

    Returns the clipped boxes and the indices kept.
    """
    b = boxes - np.array([x0, y0, x0, y0], np.float32)
    cx = 0.5 * (b[:, 0] + b[:, 2])
    cy = 0.5 * (b[:, 1] + b[:, 3])
    keep = np.flatnonzero((cx >= 0) & (cx < size) & (cy >= 0) & (cy < size))
    return np.clip(b[keep], 0, size).astype(np.float32), keep


def rot_flip(x: np.ndarray, boxes: np.ndarray, k: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Flip (left-right) then rotate by ``k × 90°`` a square ``(c, n, n)`` image and its boxes."""
    n = x.shape[-1]
    b = boxes.copy()
    if flip:
        x = x[..., ::-1]
        b[:, [0, 2]] = n - boxes[:, [2, 0]]
    for _ in range(k % 4):
        # np.rot90 on axes (-2, -1): new[i, j] = old[j, n-1-i]; a point (x, y) -> (y, n - x)
        x = np.rot90(x, 1, axes=(-2, -1))
        b = np.stack([b[:, 1], n - b[:, 2], b[:, 3], n - b[:, 0]], axis=1)
    return np.ascontiguousarray(x), b.astype(np.float32)


def augment(
    fs: FieldSet, i: int, window: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random training window of field ``i`` and its boxes (see the module docstring)."""
    _, _, ny, nx = fs.x.shape
    x0 = int(rng.integers(0, nx - window + 1))
    y0 = int(rng.integers(0, ny - window + 1))
    img = fs.x[i, :, y0 : y0 + window, x0 : x0 + window].astype(np.float32)
    b, _ = crop_boxes(fs.boxes[i], x0, y0, window)
    return rot_flip(img, b, int(rng.integers(0, 4)), bool(rng.integers(0, 2)))


def centre_crop(fs: FieldSet, i: int, window: int) -> tuple[np.ndarray, int, int]:
    """The central ``window`` pixels of field ``i`` and the crop's corner ``(x0, y0)``."""
    _, _, ny, nx = fs.x.shape
    x0, y0 = (nx - window) // 2, (ny - window) // 2
    return fs.x[i, :, y0 : y0 + window, x0 : x0 + window].astype(np.float32), x0, y0


WORKING_PIXEL_ARCSEC = PIXEL_ARCSEC
