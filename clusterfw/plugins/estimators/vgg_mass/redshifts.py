"""Where ``vgg_mass`` takes each candidate's redshift from — never a made-up one.

Order, per candidate (the first finite value wins):

1. a ``z`` column of the candidate table;
2. a ``<finder>_z`` column — the candidate's own finder's first (``finder`` column), then every
   other ``<name>_z`` column in table order (e.g. ``frcnn_z``, the optical finder's photo-z,
   after ``--combine``); this estimator's own columns are skipped;
3. the user's catalogue (``-o vgg_mass.redshifts=FILE``: Parquet, FITS or CSV/ECSV readable by
   ``astropy.table.Table.read``, with ``ra``, ``dec`` in degrees and ``z``), its nearest entry
   within :data:`MATCH_ARCMIN` (1');
4. none: NaN and source ``"none"`` — the estimator then writes a null mass and sets its flag.

A catalogue without a ``z`` (or ``ra``/``dec``) column, with a non-finite or negative ``z``, or
that cannot be read is refused with one line naming the file
(:class:`clusterfw.core.errors.InputError`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from clusterfw.core.errors import InputError

MATCH_ARCMIN = 1.0
OWN_PREFIX = "vgg_mass_"


def _finite_column(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    try:
        values = col.to_numpy(zero_copy_only=False)
        values = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, pa.ArrowInvalid):
        return np.full(table.num_rows, np.nan)
    return np.where(np.isfinite(values), values, np.nan)


def read_redshift_catalogue(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ra, dec, z)`` of a user redshift catalogue; one-line :class:`InputError` when bad."""
    from astropy.table import Table

    p = Path(path)
    if not p.is_file():
        raise InputError(str(p), "no such redshift catalogue")
    try:
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            t = pq.read_table(p)
            cols = {c.lower(): c for c in t.column_names}
            get = lambda k: np.asarray(  # noqa: E731
                t.column(cols[k]).to_numpy(zero_copy_only=False), dtype=np.float64
            )
        else:
            at = Table.read(p)
            cols = {c.lower(): c for c in at.colnames}
            get = lambda k: np.asarray(at[cols[k]], dtype=np.float64)  # noqa: E731
    except InputError:
        raise
    except Exception as exc:  # astropy/pyarrow raise many types on unreadable files
        raise InputError(
            str(p), f"cannot read the redshift catalogue ({type(exc).__name__})"
        ) from None
    missing = [k for k in ("ra", "dec", "z") if k not in cols]
    if missing:
        raise InputError(str(p), f"redshift catalogue has no {'/'.join(missing)} column")
    try:
        ra, dec, z = get("ra"), get("dec"), get("z")
    except (TypeError, ValueError) as exc:
        raise InputError(str(p), f"non-numeric ra/dec/z ({type(exc).__name__})") from None
    bad_z = int(np.count_nonzero(~np.isfinite(z) | (z < 0)))
    if bad_z:
        raise InputError(str(p), f"{bad_z} of {z.size} redshifts are NaN, infinite or negative")
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise InputError(str(p), "non-finite ra/dec in the redshift catalogue")
    return ra, dec, z


def match_catalogue(
    ra: np.ndarray,
    dec: np.ndarray,
    cat_ra: np.ndarray,
    cat_dec: np.ndarray,
    cat_z: np.ndarray,
    radius_arcmin: float = MATCH_ARCMIN,
) -> np.ndarray:
    """Redshift of each position's nearest catalogue entry within ``radius_arcmin``, else NaN."""
    out = np.full(np.size(ra), np.nan)
    if np.size(ra) == 0 or np.size(cat_ra) == 0:
        return out
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    cand = SkyCoord(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg)
    cat = SkyCoord(np.asarray(cat_ra) * u.deg, np.asarray(cat_dec) * u.deg)
    idx, sep, _ = cand.match_to_catalog_sky(cat)
    ok = sep.to_value(u.arcmin) <= radius_arcmin
    out[ok] = np.asarray(cat_z)[idx[ok]]
    return out


def lookup_redshifts(
    table: pa.Table,
    catalogue: str | Path | tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's redshift and where it came from.

    Parameters
    ----------
    table : pyarrow.Table
        Candidates (``ra``, ``dec``; optional ``finder``, ``z``, ``<finder>_z``).
    catalogue : str, Path or tuple, optional
        ``-o vgg_mass.redshifts=FILE``, or its ``(ra, dec, z)`` as read by
        :func:`read_redshift_catalogue`.

    Returns
    -------
    z : numpy.ndarray
        float64, NaN where none was found.
    source : numpy.ndarray
        object strings: ``"z"``, the column name (``"frcnn_z"``), ``"catalogue"`` or ``"none"``.
    """
    n = table.num_rows
    z = np.full(n, np.nan)
    source = np.full(n, "none", dtype=object)
    names = table.column_names

    def fill(values: np.ndarray, label: str, rows: np.ndarray | None = None) -> None:
        take = np.isnan(z) & np.isfinite(values) & (values >= 0)
        if rows is not None:
            take &= rows
        z[take] = values[take]
        source[take] = label

    if "z" in names:
        fill(_finite_column(table, "z"), "z")
    z_cols = [c for c in names if c.endswith("_z") and c != "z" and not c.startswith(OWN_PREFIX)]
    if z_cols:
        finders = (
            np.asarray(table.column("finder").to_pylist(), dtype=object)
            if "finder" in names
            else np.full(n, None, dtype=object)
        )
        for col in z_cols:  # the candidate's own finder first
            fill(_finite_column(table, col), col, rows=finders == col[: -len("_z")])
        for col in z_cols:
            fill(_finite_column(table, col), col)
    if catalogue is not None:
        if isinstance(catalogue, tuple):
            cat_ra, cat_dec, cat_z = catalogue
        else:
            cat_ra, cat_dec, cat_z = read_redshift_catalogue(catalogue)  # checked even if unused
        ra = np.asarray(table.column("ra").to_numpy(zero_copy_only=False), dtype=np.float64)
        dec = np.asarray(table.column("dec").to_numpy(zero_copy_only=False), dtype=np.float64)
        fill(match_catalogue(ra, dec, cat_ra, cat_dec, cat_z), "catalogue")
    return z, source
