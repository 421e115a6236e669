"""A learned aperture estimator of M500c from y cutouts: what y alone can reach without a CNN.

Usage::

    python benchmarks/vgg_mass_aperture_regression.py --fit SHARDS [--fit ...] \
        --test SHARDS [--test ...] [--in-sample]

Features per cutout: the log of the y summed within 1.5, 2.5, 4, 6 and 9 arcmin of the cutout
centre (arcmin²), the redshift, ln D_A(z) and ln E(z) (Planck 2018 cosmology), expanded into a
cubic polynomial and fitted to ln M500c by ridge regression with the penalty chosen by
cross-validation (scikit-learn). Fitted on the ``--fit`` folders, evaluated on each ``--test``
folder on the clusters with M500c 1e14–1e15 and z 0.1–1: median and std of ln(M_est/M_true)
and the floor the simulator's Y–M scatter sets
(:func:`clusterfw.plugins.estimators.vgg_mass.data.ym_floor_residuals`). ``--in-sample``
fits on the first half of each ``--test`` folder and evaluates on its second half instead (the
estimator told the setting: the best a simple estimator does when the profile is known). Not
run in CI.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

RADII_ARCMIN = (1.5, 2.5, 4.0, 6.0, 9.0)


def features(path: Path) -> tuple[np.ndarray, np.ndarray, object]:
    """Aperture and redshift features, ln M500c, and the loaded data of one shard folder."""
    from astropy.cosmology import Planck18

    from clusterfw.plugins.estimators.vgg_mass import data as dm

    d = dm.load_many([path], ("y",), keep_y=True)
    y = np.asarray(d.y_raw, dtype=np.float64)
    npix = y.shape[-1]
    pix = d.raw_pixel_arcmin
    c = (npix - 1) / 2.0
    yy, xx = np.mgrid[0:npix, 0:npix]
    r = np.hypot(yy - c, xx - c) * pix
    cols = [np.log(np.clip(y[:, r < rad].sum(axis=1) * pix**2, 1e-9, None)) for rad in RADII_ARCMIN]
    z = d.z
    cols += [z, np.log(Planck18.angular_diameter_distance(z).value), np.log(Planck18.efunc(z))]
    return np.column_stack(cols), np.log(d.m500c), d


def model():
    """Cubic polynomial features and a cross-validated ridge regression."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return make_pipeline(
        StandardScaler(), PolynomialFeatures(3), RidgeCV(alphas=np.logspace(-6, 2, 20))
    )


def report(name: str, e: np.ndarray, d: object) -> None:
    """Print the acceptance-range residual statistics of one test set."""
    from clusterfw.plugins.estimators.vgg_mass import data as dm

    m, z = d.m500c, d.z  # type: ignore[attr-defined]
    sel = (m >= 1e14) & (m <= 1e15) & (z >= 0.1) & (z <= 1.0)
    floor = dm.ym_floor_residuals(m, z, d.labels["y500"])[sel]  # type: ignore[attr-defined]
    r = e[sel]
    print(
        f"{name}: n {sel.sum()}, median {np.median(r):+.3f}, std {r.std(ddof=1):.3f}, "
        f"floor {floor.std(ddof=1):.3f} (ratio {r.std(ddof=1) / floor.std(ddof=1):.2f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=Path, action="append", default=[])
    ap.add_argument("--test", type=Path, action="append", required=True)
    ap.add_argument("--in-sample", action="store_true")
    a = ap.parse_args()
    from clusterfw.plugins.estimators.vgg_mass.data import select

    if a.in_sample:
        for p in a.test:
            x, t, d = features(p)
            h = len(t) // 2
            e = model().fit(x[:h], t[:h]).predict(x) - t
            report(f"{p} (in-sample halves)", e[h:], select(d, np.arange(len(t)) >= h))
        return
    if not a.fit:
        raise SystemExit("--fit is required without --in-sample")
    fits = [features(p) for p in a.fit]
    est = model().fit(np.concatenate([f[0] for f in fits]), np.concatenate([f[1] for f in fits]))
    for p in a.test:
        x, t, d = features(p)
        report(str(p), est.predict(x) - t, d)


if __name__ == "__main__":
    main()
