"""Held-out field evaluation of the ``frcnn`` finder (the numbers of docs/finders/frcnn.md).

``python -m clusterfw.plugins.finders.frcnn.evaluate --val DIR --test DIR [--weights FILE]
[--json OUT] [--plot PNG]`` runs the finder's own detection path (:meth:`FrcnnFinder.detect`:
overlapping windows and NMS over the whole field, red-sequence centring and photo-z) on every
field of two ``clusterfw simulate optical-fields`` folders, picks the probability threshold with
the best F1 (100 kpc match) on the validation fields and reports, on the test fields:

- F1, purity, completeness with a match within 100 kpc of the true centre (Deep-CEE's rule) and
  within 1', at that threshold;
- the median centre offset (kpc) of the matched clusters, for the BCG-centred and the box-centre
  positions;
- completeness against M500c and z (a figure with ``--plot``);
- σ(Δz/(1+z)) of ``frcnn_z`` for the matched clusters: the standard deviation, the NMAD and the
  outlier fraction (|Δz|/(1+z) > 0.1), and the bias (median).

Centring rules (the finder's ``centring``, ``central_gamma``, ``central_sigma_kpc``,
``central_max_offset_kpc``, ``bcg_reach_arcmin``, ``bcg_max_offset_arcmin``, ``no_red_weight``)
are applied to the stored detections (:func:`apply_centring`): the finder's defaults, or with
``--tune-centring`` the rule of :func:`centring_grid` with the best validation F1 at 100 kpc
(:func:`tune_centring`, validation fields only); the JSON also holds the numbers without any
rule (``without_centring_rules``: the brightest red-sequence galaxy, no offset limit). The
photo-z block also gives the numbers over the boxes with a single red sequence
(``sigma_unambiguous``) and how many outliers were flagged by a second one (``frcnn_z_alt``).

Detections within half a window of nothing are kept: the fields are 0.2° wide, the clusters lie
in their central 70 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Detections below this probability get no photo-z / BCG (they never pass a threshold).
PZ_P_MIN = 0.02


def run_fields(
    finder: Any, directory: str | Path, max_fields: int | None = None
) -> list[dict[str, Any]]:
    """The finder's detections on the fields of a shard folder, with each field's truth."""
    from clusterfw.plugins.finders.frcnn.data import shard_pixel_arcsec
    from clusterfw.plugins.finders.frcnn.photoz import box_photoz, find_sources
    from clusterfw.sim.shards.common import iter_shards

    pix = shard_pixel_arcsec(directory)
    net = finder._net()
    out = []
    for shard in iter_shards(directory):
        for j in range(shard["images"].shape[0]):
            if max_fields is not None and len(out) >= max_fields:
                return out
            img = shard["images"][j].astype(np.float32)
            det = finder.detect(img, pix)
            boxes = det["boxes"]
            src = find_sources(img, pix, shard["psf_fwhm_arcsec"][j])
            n = len(det["raw"])
            z = np.full(n, np.nan)
            zerr = np.full(n, np.nan)
            zalt = np.full(n, np.nan)
            xy_bcg = np.zeros((n, 2))
            p_det = net.prob(det["raw"])
            for k in range(n):
                if p_det[k] < PZ_P_MIN:  # far below any threshold: no photo-z, box centre
                    xy_bcg[k] = ((boxes[k, 0] + boxes[k, 2]) / 2, (boxes[k, 1] + boxes[k, 3]) / 2)
                    continue
                # sources are at pixel indices: the box moves to that frame, the BCG back
                pz = box_photoz(src, tuple(boxes[k] - 0.5), img.shape[1:])
                z[k], zerr[k], zalt[k] = pz.z, pz.z_err, pz.z_alt
                xy_bcg[k] = (pz.x + 0.5, pz.y + 0.5)
            xy_box = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2,
                               (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)  # fmt: skip
            k = int(shard["n_boxes"][j])
            out.append({
                "p": net.prob(det["raw"]),
                "xy_bcg": xy_bcg,  # stored pixels, edge frame
                "xy_box": xy_box,
                "z": z,
                "z_err": zerr,
                "z_alt": zalt,
                "true_xy": np.stack([shard["box_x"][j, :k], shard["box_y"][j, :k]], axis=1),
                "true_z": shard["box_z"][j, :k],
                "true_m": shard["box_m500c"][j, :k],
                "pix": pix,
                "npix": float(np.all(np.isfinite(img), axis=0).sum()),
                "src": src,
                "side": np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]),
                "p_raw": p_det.copy(),
            })  # fmt: skip
    return out


#: The centring rules tried on the validation fields (``None``: the rule is off).
#: ``brightest`` (session 6): the BCG search radius, the maximum BCG offset (arcmin).
REACH_GRID = (None, 0.25, 0.5, 0.75)  # arcmin: BCG searched within this of the box centre
FAR_GRID = (None, 0.25, 0.5)  # arcmin: a BCG farther than this gives way to the box centre
NORED_GRID = (1.0, 0.5, 0.25, 0.0)  # probability factor of boxes without a red-sequence excess
#: ``central`` (session 7): ln L weight, density scale (kpc), maximum offset (kpc); the search
#: radius is :data:`.photoz.CENTRAL_SEARCH_KPC` (and 0.35 box sides).
GAMMA_GRID = (1.0, 2.0, 3.0)
SIGMA_KPC_GRID = (100.0, 200.0)
MAX_OFFSET_KPC_GRID = (None, 200.0, 250.0, 300.0)


def _rule_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(rule.items()))


def apply_centring(
    fields: list[dict[str, Any]],
    reach_arcmin: float | None = None,
    far_arcmin: float | None = None,
    nored_weight: float = 1.0,
    _bcg_cache: dict[Any, Any] | None = None,
    *,
    centring: str = "brightest",
    gamma: float = 2.0,
    sigma_kpc: float = 100.0,
    max_offset_kpc: float | None = None,
) -> None:
    """Set each field's ``xy_bcg`` and ``p`` by one set of centring rules (in place).

    ``centring="brightest"``: the BCG (:func:`.photoz.pick_bcg`) is searched within 0.35 box
    sides and ``reach_arcmin`` of the box centre; when it lies farther than ``far_arcmin`` from
    it the box centre is kept. ``centring="central"``: the central galaxy
    (:func:`.photoz.pick_central`, ``gamma``, ``sigma_kpc``) within 0.35 box sides,
    :data:`.photoz.CENTRAL_SEARCH_KPC` and ``reach_arcmin``; farther than ``max_offset_kpc``
    (or ``far_arcmin``) the box centre is kept. Boxes whose red-sequence photo-z found no
    excess have their probability multiplied by ``nored_weight``.
    """
    from clusterfw.plugins.finders.frcnn.photoz import (
        BCG_REACH,
        CENTRAL_SEARCH_KPC,
        kpc_per_pixel,
        pick_bcg,
        pick_central,
    )

    rule = (centring, reach_arcmin, gamma, sigma_kpc)
    for n, f in enumerate(fields):
        xy = f["xy_box"].copy()
        for k in np.flatnonzero(np.isfinite(f["z"])):
            reach = BCG_REACH * f["side"][k]
            if reach_arcmin is not None:
                reach = min(reach, reach_arcmin * 60.0 / f["pix"])
            cx, cy = f["xy_box"][k] - 0.5  # sources are at pixel indices
            zk = float(f["z"][k])
            far = np.inf if far_arcmin is None else far_arcmin * 60.0 / f["pix"]
            key = (n, int(k), rule)
            if centring == "central":
                kpp = kpc_per_pixel(zk, f["pix"])
                reach = min(reach, CENTRAL_SEARCH_KPC / kpp)
                if max_offset_kpc is not None:
                    far = min(far, max_offset_kpc / kpp)
            if _bcg_cache is not None and key in _bcg_cache:
                i = _bcg_cache[key]
            else:
                if centring == "central":
                    i = pick_central(f["src"], zk, float(cx), float(cy), float(reach),
                                     sigma_kpc / kpp, gamma)  # fmt: skip
                else:
                    i = pick_bcg(f["src"], zk, float(cx), float(cy), float(reach))
                if _bcg_cache is not None:
                    _bcg_cache[key] = i
            if i < 0:
                continue
            bx, by = f["src"].x[i], f["src"].y[i]
            if np.hypot(bx - cx, by - cy) > far:
                continue
            xy[k] = (bx + 0.5, by + 0.5)
        f["xy_bcg"] = xy
        f["p"] = np.where(np.isfinite(f["z"]), f["p_raw"], f["p_raw"] * nored_weight)


def centring_grid() -> list[dict[str, Any]]:
    """Every rule :func:`tune_centring` tries: the session-6 grid, then the central grid."""
    rules: list[dict[str, Any]] = []
    for reach in REACH_GRID:
        for far in FAR_GRID:
            for w in NORED_GRID:
                rules.append({"centring": "brightest", "reach_arcmin": reach, "far_arcmin": far,
                              "nored_weight": w})  # fmt: skip
    for g in GAMMA_GRID:
        for sig in SIGMA_KPC_GRID:
            for off in MAX_OFFSET_KPC_GRID:
                for w in NORED_GRID:
                    rules.append({"centring": "central", "gamma": g, "sigma_kpc": sig,
                                  "max_offset_kpc": off, "nored_weight": w})  # fmt: skip
    return rules


def tune_centring(val: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The centring rule with the best validation F1 (100 kpc, central positions), and every try.

    Every rule of :func:`centring_grid`; for each, the probability threshold is the F1-best
    one on the validation fields. Ties keep the smaller median centre offset, then the earlier
    rule.
    """
    from clusterfw.plugins.finders.frcnn.metrics import best_f1

    cache: dict[Any, Any] = {}
    tries = []
    for rule in centring_grid():
        apply_centring(val, _bcg_cache=cache, **rule)
        b = best_f1(match(val, "xy_bcg", "100kpc"))
        off = median_offset_kpc(val, "xy_bcg", b["threshold"])
        tries.append({**rule, "val_f1_100kpc": b["f1"], "threshold": b["threshold"],
                      "val_median_offset_kpc": off})  # fmt: skip
    best = max(tries, key=lambda t: (round(t["val_f1_100kpc"], 9), -t["val_median_offset_kpc"]))
    rule = {k: best[k] for k in best if k not in ("val_f1_100kpc", "threshold",
                                                  "val_median_offset_kpc")}  # fmt: skip
    apply_centring(val, _bcg_cache=cache, **rule)
    return best, tries


def median_offset_kpc(fields: list[dict[str, Any]], which: str, thr: float) -> float:
    """Median offset (proper kpc) of the detections with p ≥ ``thr`` matched within 1'."""
    from clusterfw.plugins.finders.frcnn.metrics import match_field

    offs: list[float] = []
    for f in fields:
        sel = f["p"] >= thr
        _, _, off = match_field(f[which][sel], f["p"][sel], f["true_xy"], 60.0 / f["pix"])
        ok = np.isfinite(off)
        offs.extend(list(off[ok] * kpc_per_pix(f["true_z"][ok], f["pix"])))
    return float(np.median(offs)) if offs else float("nan")


def match(fields: list[dict[str, Any]], which: str, rule: str) -> Any:
    """Pooled :class:`~.metrics.Matched` of the fields (``rule``: ``100kpc`` or ``1arcmin``)."""
    from clusterfw.plugins.finders.frcnn.metrics import match_field, pool
    from clusterfw.plugins.finders.frcnn.prep import PIXEL_ARCSEC
    from clusterfw.plugins.finders.frcnn.train import kpc_radius_pix

    parts = []
    for f in fields:
        if rule == "100kpc":
            r = kpc_radius_pix(f["true_z"]) * PIXEL_ARCSEC / f["pix"]
        else:
            r = 60.0 / f["pix"]
        parts.append(match_field(f[which], f["p"], f["true_xy"], r))
        parts[-1] = (f["p"], *parts[-1])
    return pool(parts)


def kpc_per_pix(z: np.ndarray, pix_arcsec: float) -> np.ndarray:
    """Proper kpc per stored pixel at ``z``."""
    from clusterfw.sim.cosmology import angular_diameter_distance

    da = np.asarray(angular_diameter_distance(np.asarray(z, float)), float) * 1000.0
    return da * pix_arcsec / 206264.806


def summarise(val: list[dict[str, Any]], test: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number of the module docstring."""
    from clusterfw.plugins.finders.frcnn.metrics import best_f1, f1_at

    res: dict[str, Any] = {}
    thr = best_f1(match(val, "xy_bcg", "100kpc"))["threshold"]
    res["threshold_probability"] = thr
    res["val_100kpc"] = best_f1(match(val, "xy_bcg", "100kpc"))
    for which in ("xy_bcg", "xy_box"):
        for rule in ("100kpc", "1arcmin"):
            res[f"val_{rule}_{which[3:]}_at_threshold"] = f1_at(match(val, which, rule), thr)
    for which in ("xy_bcg", "xy_box"):
        for rule in ("100kpc", "1arcmin"):
            res[f"test_{rule}_{which[3:]}"] = f1_at(match(test, which, rule), thr)
    # offsets, completeness, photo-z from the 1' match of the BCG positions above threshold
    offs_bcg, offs_box, zt, zp, ze, za, mt, found = [], [], [], [], [], [], [], []
    from clusterfw.plugins.finders.frcnn.metrics import match_field

    for f in test:
        sel = f["p"] >= thr
        for which, offs in (("xy_bcg", offs_bcg), ("xy_box", offs_box)):
            _, ts, off = match_field(f[which][sel], f["p"][sel], f["true_xy"], 60.0 / f["pix"])
            offs.extend(list(off[np.isfinite(off)] * kpc_per_pix(f["true_z"][np.isfinite(off)],
                                                                 f["pix"])))  # fmt: skip
            if which == "xy_bcg":
                tp, ts, off = match_field(f[which][sel], f["p"][sel], f["true_xy"],
                                          60.0 / f["pix"])  # fmt: skip
                # the detection matched to each true cluster
                d = np.hypot(f[which][sel][:, None, 0] - f["true_xy"][None, :, 0],
                             f[which][sel][:, None, 1] - f["true_xy"][None, :, 1])  # fmt: skip
                for j in range(len(f["true_z"])):
                    mt.append(f["true_m"][j])
                    zt.append(f["true_z"][j])
                    ok = np.isfinite(off[j])
                    found.append(bool(ok))
                    if ok:
                        i = int(np.flatnonzero(np.isclose(d[:, j], off[j]) & tp)[0])
                        zp.append(f["z"][sel][i])
                        ze.append(f["z_err"][sel][i])
                        za.append(f["z_alt"][sel][i])
                    else:
                        zp.append(np.nan)
                        ze.append(np.nan)
                        za.append(np.nan)
    zt_a, zp_a, ze_a, za_a = np.array(zt), np.array(zp), np.array(ze), np.array(za)
    mt_a, found_a = np.array(mt), np.array(found)
    res["median_offset_kpc_bcg"] = float(np.median(offs_bcg)) if offs_bcg else float("nan")
    res["median_offset_kpc_box"] = float(np.median(offs_box)) if offs_box else float("nan")
    dz = (zp_a - zt_a) / (1 + zt_a)
    ok = np.isfinite(dz)
    res["photoz"] = {
        "n": int(ok.sum()),
        "n_without_z": int((found_a & ~ok).sum()),
        "sigma": float(np.std(dz[ok])) if ok.any() else float("nan"),
        "nmad": float(1.4826 * np.median(np.abs(dz[ok] - np.median(dz[ok]))))
        if ok.any()
        else float("nan"),
        "bias_median": float(np.median(dz[ok])) if ok.any() else float("nan"),
        "outlier_fraction": float(np.mean(np.abs(dz[ok]) > 0.1)) if ok.any() else float("nan"),
        "sigma_without_outliers": float(np.std(dz[ok][np.abs(dz[ok]) <= 0.1]))
        if ok.any()
        else float("nan"),
        "median_z_err": float(np.median(ze_a[ok])) if ok.any() else float("nan"),
    }
    # a second red sequence in the box (frcnn_z_alt): the redshift is flagged as ambiguous
    amb = ok & np.isfinite(za_a)
    single = ok & ~amb
    out = ok & (np.abs(dz) > 0.1)
    dza = (za_a - zt_a) / (1 + zt_a)
    res["photoz"].update({
        "n_ambiguous": int(amb.sum()),
        "sigma_unambiguous": float(np.std(dz[single])) if single.any() else float("nan"),
        "nmad_unambiguous": float(1.4826 * np.median(np.abs(dz[single] - np.median(dz[single]))))
        if single.any()
        else float("nan"),
        "outliers": int(out.sum()),
        "outliers_flagged_ambiguous": int((out & amb).sum()),
        "outliers_with_z_alt_right": int((out & amb & (np.abs(dza) <= 0.1)).sum()),
        "median_z_err_ambiguous": float(np.median(ze_a[amb])) if amb.any() else float("nan"),
    })  # fmt: skip
    m_edges = np.array([1e14, 1.5e14, 2.5e14, 4e14, 1e15])
    z_edges = np.array([0.05, 0.2, 0.35, 0.5, 0.7])
    res["completeness_vs_m500c"] = _binned(mt_a, found_a, m_edges)
    res["completeness_vs_z"] = _binned(zt_a, found_a, z_edges)
    res["_arrays"] = {"m": mt_a, "z": zt_a, "found": found_a, "zp": zp_a, "za": za_a}
    return res


def _binned(x: np.ndarray, found: np.ndarray, edges: np.ndarray) -> list[dict[str, float]]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = (x >= lo) & (x < hi)
        c = float(found[s].mean()) if s.any() else float("nan")
        out.append({"lo": float(lo), "hi": float(hi), "n": int(s.sum()), "completeness": c})
    return out


def plot(res: dict[str, Any], path: str | Path) -> None:
    """Completeness against M500c and z, and photo-z against true z (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = res["_arrays"]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
    for k, (key, xlabel, log) in enumerate(
        (("completeness_vs_m500c", "M500c [Msun]", True), ("completeness_vs_z", "z", False))
    ):
        rows = res[key]
        xc = [np.sqrt(r["lo"] * r["hi"]) if log else 0.5 * (r["lo"] + r["hi"]) for r in rows]
        c = [r["completeness"] for r in rows]
        n = [r["n"] for r in rows]
        err = [np.sqrt(max(v * (1 - v), 1e-3) / max(m, 1)) for v, m in zip(c, n, strict=True)]
        ax[k].errorbar(xc, c, yerr=err, marker="o", capsize=3)
        ax[k].set_xscale("log" if log else "linear")
        ax[k].set_ylim(0, 1.05)
        ax[k].set_xlabel(xlabel)
        ax[k].set_ylabel("completeness (1' match, test fields)")
    ok = np.isfinite(a["zp"])
    amb = ok & np.isfinite(a["za"])
    ax[2].plot(a["z"][ok & ~amb], a["zp"][ok & ~amb], ".", ms=4, label="one red sequence")
    ax[2].plot(a["z"][amb], a["zp"][amb], "o", ms=4, color="C1", label="two: frcnn_z")
    ax[2].plot(a["z"][amb], a["za"][amb], "o", ms=4, mfc="none", color="C1", label="frcnn_z_alt")
    ax[2].vlines(a["z"][amb], np.minimum(a["zp"][amb], a["za"][amb]),
                 np.maximum(a["zp"][amb], a["za"][amb]), color="C1", lw=0.5)  # fmt: skip
    ax[2].legend(fontsize=7, loc="upper left")
    ax[2].plot([0, 0.8], [0, 0.8], "k-", lw=0.6)
    ax[2].set_xlabel("true z")
    ax[2].set_ylabel("frcnn_z (red sequence)")
    pz = res["photoz"]
    title = f"NMAD {pz['nmad']:.3f}, σ {pz['sigma']:.3f}, outliers {pz['outlier_fraction']:.0%}"
    ax[2].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def composite_figure(
    finder: Any, directory: str | Path, indices: list[int], path: str | Path, p_min: float
) -> None:
    """gri composites (Lupton et al. 2004 asinh) of some fields with true boxes (green, z) and
    detections with p ≥ ``p_min`` (red: box, BCG position, p and frcnn_z)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization import make_lupton_rgb
    from matplotlib.patches import Rectangle

    from clusterfw.plugins.finders.frcnn.data import shard_pixel_arcsec
    from clusterfw.plugins.finders.frcnn.photoz import box_photoz, find_sources
    from clusterfw.sim.shards.common import iter_shards

    pix = shard_pixel_arcsec(directory)
    fields = []
    i = 0
    for shard in iter_shards(directory):
        for j in range(shard["images"].shape[0]):
            if i in indices:
                fields.append({k: v[j] for k, v in shard.items()})
            i += 1
    fig, axes = plt.subplots(1, len(fields), figsize=(4.2 * len(fields), 4.4))
    for ax, f in zip(np.atleast_1d(axes), fields, strict=True):
        img = f["images"].astype(np.float32)
        rgb = make_lupton_rgb(img[2], img[1], img[0], stretch=0.5, Q=8, minimum=0.0)
        ax.imshow(rgb, origin="lower")
        for k in range(int(f["n_boxes"])):
            x0, y0, x1, y1 = f["boxes"][k]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   ec="lime", lw=1.2))  # fmt: skip
            ax.text(x0, y1 + 4, f"z={f['box_z'][k]:.2f}", color="lime", fontsize=7)
        det = finder.detect(img, pix)
        p = finder._net().prob(det["raw"])
        src = find_sources(img, pix, f["psf_fwhm_arcsec"])
        for b, pk in zip(det["boxes"][p >= p_min], p[p >= p_min], strict=True):
            pz = box_photoz(src, tuple(b - 0.5), img.shape[1:], pixel_arcsec=pix)
            ax.add_patch(Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1],
                                   fill=False, ec="red", lw=1.0, ls="--"))  # fmt: skip
            ax.plot(pz.x, pz.y, "+", color="red", ms=8)
            ax.text(b[0], b[1] - 14, f"p={pk:.2f} z={pz.z:.2f}", color="red", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def use_bcg_truth(fields: list[dict[str, Any]], directories: str | Path | list[Any]) -> None:
    """Make each field's simulated BCGs its true centres (Deep-CEE's ground truth), in place.

    ``fields`` are those of ``directories`` (one folder or several), in order.
    """
    from clusterfw.sim.shards.detection import bcg_positions

    dirs = directories if isinstance(directories, list) else [directories]
    positions = [xy for d in dirs for xy in bcg_positions(d)]
    for f, xy in zip(fields, positions, strict=False):
        f["true_xy"] = xy


def assess(
    val: list[dict[str, Any]], test: list[dict[str, Any]], options: Any, tune: bool
) -> dict[str, Any]:
    """Centring rules (the finder's, or tuned on ``val``) applied, then :func:`summarise`."""
    untuned: dict[str, Any] = {"centring": "brightest", "reach_arcmin": None,
                               "far_arcmin": None, "nored_weight": 1.0}  # fmt: skip
    apply_centring(val, **untuned)
    apply_centring(test, **untuned)
    before = summarise(val, test)
    before.pop("_arrays")
    tries: list[dict[str, Any]] = []
    if tune:
        best, tries = tune_centring(val)
        rules = {k: best[k] for k in best if k not in ("val_f1_100kpc", "threshold",
                                                       "val_median_offset_kpc")}  # fmt: skip
    else:
        o = options
        rules = {"centring": o.centring, "reach_arcmin": o.bcg_reach_arcmin,
                 "far_arcmin": o.bcg_max_offset_arcmin, "nored_weight": o.no_red_weight,
                 "gamma": o.central_gamma, "sigma_kpc": o.central_sigma_kpc,
                 "max_offset_kpc": o.central_max_offset_kpc}  # fmt: skip
    apply_centring(val, **rules)
    apply_centring(test, **rules)
    res = summarise(val, test)
    res["centring_rules"] = rules
    res["without_centring_rules"] = {
        k: before[k] for k in before if k.startswith(("test_", "val_", "median", "threshold"))
    }
    res["centring_tries"] = tries
    return res


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val", required=True, nargs="+", help="validation field folder(s)")
    ap.add_argument("--test", required=True)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-fields", type=int, default=None)
    ap.add_argument("--composite", default=None, help="PNG of gri composites of test fields")
    ap.add_argument("--composite-fields", default="1,6,11")
    ap.add_argument(
        "--tune-centring",
        action="store_true",
        help="pick the centring rules on the validation fields (else the finder's defaults)",
    )
    ap.add_argument(
        "--truth-centre",
        choices=("halo", "bcg", "both"),
        default="halo",
        help="true centres: the halo's (default), the simulated BCG (Deep-CEE's ground truth), "
        "or both (the BCG numbers under 'bcg_truth')",
    )
    args = ap.parse_args(argv)
    from clusterfw.plugins.finders.frcnn.finder import FrcnnFinder

    t0 = time.time()
    finder = FrcnnFinder({"weights": args.weights, "threads": args.threads, "p_min": 0.0})
    val = [f for d in args.val for f in run_fields(finder, d, args.max_fields)]
    test = run_fields(finder, args.test, args.max_fields)
    if args.truth_centre == "bcg":
        use_bcg_truth(val, args.val)
        use_bcg_truth(test, args.test)
    res = assess(val, test, finder.options, args.tune_centring)
    res["truth_centre"] = "bcg" if args.truth_centre == "bcg" else "halo"
    if args.plot:
        plot(res, args.plot)
    if args.composite:
        idx = [int(v) for v in args.composite_fields.split(",")]
        composite_figure(finder, args.test, idx, args.composite, res["threshold_probability"])
    res.pop("_arrays")
    if args.truth_centre == "both":
        use_bcg_truth(val, args.val)
        use_bcg_truth(test, args.test)
        alt = assess(val, test, finder.options, args.tune_centring)
        alt.pop("_arrays")
        alt.pop("centring_tries")
        res["bcg_truth"] = alt
    res["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(res, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
