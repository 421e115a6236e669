"""Localising clusters found by the cutout classifier.

Two methods. **Regression** (the default when the weights come with a position head,
``position.safetensors``; :func:`localise_regression`): the head reads the classifier's own
features of each grid cutout and predicts where in it the cluster is (offset from the centre,
:mod:`clusterfw.plugins.finders.resnet.position`):

1. seeds are grid cutouts with probability ≥ ``p_seed``; each moves to its predicted position;
2. ``iterations`` times, a cutout centred on the current position (nearest pixel) is scored and
   the position moved by its predicted offset — the cluster is then near the centre, where the
   head is most precise, and a seed whose cluster lay outside its central box is pulled in;
3. positions closer than ``merge`` are merged, keeping the most probable (seeds on the same
   cluster converge to the same place).

Cost: ``1 + iterations`` cutouts per seed (plus the final scoring), against
``(2 reach / step + 1)²`` and more for the plateau search.

**Plateau search** (without a head; :func:`localise`):

A grid cutout only says that a cluster lies *somewhere* in its central 6' × 6' box, so its
centre can be 3' or more from the cluster, too far for a catalogue matched at 1'. The network
was trained with clusters anywhere in that box, so the probability of a cutout centred at
offset ``d`` from a cluster is a plateau, high while ``|dx|, |dy| < 3'`` and falling outside.
The centre of that plateau is the cluster position:

1. seeds are grid cutouts with probability ≥ ``p_seed``; a seed within ``suppress`` of a
   stronger seed is dropped (it sees the same cluster);
2. around each seed, cutouts centred on a square grid of offsets (``±reach`` in steps of
   ``step``) are scored;
3. the position is the probability-weighted mean of the offsets whose probability is at least
   ``plateau`` × the local maximum;
4. refined positions closer than ``merge`` are merged, keeping the most probable.

The score of a localised candidate is then the probability of a cutout centred on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LocaliseSettings:
    """Parameters of :func:`localise` (lengths in pixels)."""

    p_seed: float
    suppress_pix: float
    reach_pix: float
    step_pix: float
    plateau: float
    merge_pix: float
    refine_passes: int = 0
    iterations: int = 2


def _plateau_centres(
    x: np.ndarray,
    y: np.ndarray,
    score_centred: Callable[[np.ndarray, np.ndarray], np.ndarray],
    reach: float,
    step: float,
    plateau: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probability-weighted centres of the plateaus around ``(x, y)`` and their peak values."""
    steps = np.arange(-reach, reach + 1e-9, step)
    oy, ox = (a.ravel() for a in np.meshgrid(steps, steps, indexing="ij"))
    gx = (x[:, None] + ox[None, :]).ravel()
    gy = (y[:, None] + oy[None, :]).ravel()
    gp = np.nan_to_num(score_centred(gx, gy), nan=0.0).reshape(x.size, ox.size)
    peak = gp.max(axis=1, keepdims=True)
    w = np.where(gp >= plateau * peak, gp, 0.0)
    wsum = np.maximum(w.sum(axis=1), 1e-12)
    return x + (w * ox).sum(axis=1) / wsum, y + (w * oy).sum(axis=1) / wsum, peak[:, 0]


def suppress_weaker(x: np.ndarray, y: np.ndarray, p: np.ndarray, radius: float) -> np.ndarray:
    """Indices of points kept by greedy non-maximum suppression within ``radius``.

    Points are visited from the most to the least probable; a point closer than ``radius`` to
    an already kept one is dropped.
    """
    from scipy.spatial import cKDTree

    pts = np.column_stack([x, y]).astype(np.float64)
    near = cKDTree(pts).query_ball_point(pts, radius) if len(pts) else []
    dropped = np.zeros(len(pts), dtype=bool)
    kept: list[int] = []
    for i in np.argsort(-p, kind="stable"):
        if dropped[i]:
            continue
        kept.append(int(i))
        j = np.asarray(near[i], dtype=np.int64)
        d2 = (x[j] - x[i]) ** 2 + (y[j] - y[i]) ** 2
        dropped[j[d2 < radius**2]] = True  # strictly closer than radius (on it: kept)
    return np.asarray(kept, dtype=np.int64)


def localise(
    x: np.ndarray,
    y: np.ndarray,
    prob: np.ndarray,
    score_centred: Callable[[np.ndarray, np.ndarray], np.ndarray],
    settings: LocaliseSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Refined cluster positions from grid-cutout centres and probabilities.

    Parameters
    ----------
    x, y : numpy.ndarray
        Tile-pixel centres of the grid cutouts.
    prob : numpy.ndarray
        Their probabilities (NaN for unusable cutouts).
    score_centred : callable
        ``score_centred(xc, yc) -> probabilities`` of cutouts centred on tile pixels.
    settings : LocaliseSettings

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Tile-pixel positions of the localised candidates.
    """
    ok = np.isfinite(prob) & (prob >= settings.p_seed)
    sx, sy, sp = x[ok], y[ok], prob[ok]
    seeds = suppress_weaker(sx, sy, sp, settings.suppress_pix)
    if seeds.size == 0:
        return np.zeros(0), np.zeros(0)
    px, py, peak = _plateau_centres(
        sx[seeds], sy[seeds], score_centred, settings.reach_pix, settings.step_pix, settings.plateau
    )
    for _ in range(settings.refine_passes):
        px, py, peak = _plateau_centres(
            px,
            py,
            score_centred,
            settings.reach_pix * 0.75,
            settings.step_pix * 0.5,
            settings.plateau,
        )
    keep = suppress_weaker(px, py, peak, settings.merge_pix)
    return px[keep], py[keep]


def localise_regression(
    x: np.ndarray,
    y: np.ndarray,
    prob: np.ndarray,
    shift: np.ndarray,
    score_centred: Callable[
        [np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    ],
    settings: LocaliseSettings,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster positions from grid cutouts and their predicted offsets (see the module).

    Parameters
    ----------
    x, y : numpy.ndarray
        Tile-pixel centres of the grid cutouts.
    prob : numpy.ndarray
        Their probabilities (NaN for unusable cutouts).
    shift : numpy.ndarray
        ``(n, 2)`` predicted cluster offsets from each centre, tile pixels.
    score_centred : callable
        ``score_centred(xc, yc) -> (prob, shift, cx, cy)`` of cutouts centred on the nearest
        pixels of ``(xc, yc)``: probabilities, predicted offsets and the centres actually used.
    settings : LocaliseSettings
        ``p_seed``, ``iterations``, ``merge_pix`` and ``reach_pix`` (largest move per step).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Tile-pixel positions of the localised candidates.
    """
    shift = np.asarray(shift, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(prob) & (prob >= settings.p_seed) & np.isfinite(shift).all(axis=1)
    reach = settings.reach_pix
    px = x[ok] + np.clip(shift[ok, 0], -reach, reach)
    py = y[ok] + np.clip(shift[ok, 1], -reach, reach)
    p = prob[ok]
    for _ in range(settings.iterations):
        if px.size == 0:
            break
        p, sh, cx, cy = score_centred(px, py)
        good = np.isfinite(p) & np.isfinite(sh).all(axis=1)
        px = cx[good] + np.clip(sh[good, 0], -reach, reach)
        py = cy[good] + np.clip(sh[good, 1], -reach, reach)
        p = p[good]
    keep = suppress_weaker(px, py, p, settings.merge_pix)
    return px[keep], py[keep]
