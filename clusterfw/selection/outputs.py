"""Mass-limit maps and figures of a selection function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from clusterfw.selection.table import overall


def _cells(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(m_edges, z_edges, completeness[nm, nz], error[nm, nz])`` of a block of rows, plus the
    tile ids present."""
    m_lo = np.unique(table.column("m500c_lo").to_numpy())
    m_hi = np.unique(table.column("m500c_hi").to_numpy())
    z_lo = np.unique(table.column("z_lo").to_numpy())
    z_hi = np.unique(table.column("z_hi").to_numpy())
    m_edges = np.append(m_lo, m_hi[-1])
    z_edges = np.append(z_lo, z_hi[-1])
    tiles = (
        np.array(
            sorted({t for t in table.column("tile").to_pylist() if t is not None}), dtype=np.int64
        )
        if "tile" in table.column_names
        else np.zeros(0, np.int64)
    )
    return (
        m_edges,
        z_edges,
        _grid_of(table, m_lo, z_lo, "completeness"),
        _grid_of(table, m_lo, z_lo, "completeness_err"),
        tiles,
    )


def _grid_of(block: pa.Table, m_lo: np.ndarray, z_lo: np.ndarray, col: str) -> np.ndarray:
    out = np.full((m_lo.size, z_lo.size), np.nan)
    im = np.searchsorted(m_lo, block.column("m500c_lo").to_numpy())
    iz = np.searchsorted(z_lo, block.column("z_lo").to_numpy())
    out[im, iz] = block.column(col).to_numpy(zero_copy_only=False)
    return out


def mass_limit(
    m_edges: np.ndarray, z_edges: np.ndarray, comp: np.ndarray, level: float, z: float
) -> float:
    """Smallest M500c whose completeness reaches ``level`` at redshift ``z`` (NaN if none).

    Completeness is interpolated linearly in z between the cells' centres (clamped), then in
    ln M between the mass centres; a grid already complete at its lowest centre gives that
    centre (an upper limit).
    """
    zc = 0.5 * (z_edges[1:] + z_edges[:-1])
    lm = np.log(np.sqrt(m_edges[1:] * m_edges[:-1]))
    col = np.array([np.interp(z, zc, row) if np.isfinite(row).all() else np.nan for row in comp])
    ok = np.isfinite(col)
    if not ok.any():
        return float("nan")
    lm, col = lm[ok], col[ok]
    above = np.flatnonzero(col >= level)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(np.exp(lm[0]))
    c0, c1 = col[i - 1], col[i]
    f = (level - c0) / (c1 - c0) if c1 != c0 else 1.0
    return float(np.exp(lm[i - 1] + f * (lm[i] - lm[i - 1])))


def tile_mass_limits(table: pa.Table, level: float, z: float) -> dict[int | None, float]:
    """The mass limit of the whole map (key None) and of every tile of the table."""
    import pyarrow.compute as pc

    whole = overall(table)
    m_edges, z_edges, comp, _, tiles = _cells(whole)
    out: dict[int | None, float] = {None: mass_limit(m_edges, z_edges, comp, level, z)}
    if "tile" in table.column_names:
        for t in sorted({v for v in table.column("tile").to_pylist() if v is not None}):
            block = table.filter(pc.equal(table.column("tile"), t))
            m_lo = np.unique(block.column("m500c_lo").to_numpy())
            z_lo = np.unique(block.column("z_lo").to_numpy())
            c = _grid_of(block, m_lo, z_lo, "completeness")
            out[int(t)] = mass_limit(m_edges, z_edges, c, level, z)
    return out


def write_mass_limit_map(result: Any, path: Path, level: float, z: float) -> Path:
    """A FITS image on the maps' grid: each pixel holds the M500c limit (Msun) at completeness
    ``level`` and redshift ``z`` of the tile whose core holds it (the whole map's limit where
    the table has no per-tile rows); NaN on masked pixels and where the level is never reached.
    """
    from astropy.io import fits

    from clusterfw.core.atomic import write_atomic
    from clusterfw.selection.inject import build_target
    from clusterfw.selection.injection import tile_of

    prep = result.prepared
    target = build_target(prep.sky, prep.finders, prep.finder_layers)
    limits = tile_mass_limits(result.table, level, z)
    ny, nx = target.shape
    out = np.full((ny, nx), np.float32(limits[None]), dtype=np.float32)
    if len(limits) > 1:
        yy, xx = np.mgrid[0:ny, 0:nx]
        ra, dec = target.wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
        tid = tile_of(prep.tiles, np.asarray(ra) % 360.0, np.asarray(dec)).reshape(ny, nx)
        for t, lim in limits.items():
            if t is not None:
                out[tid == t] = lim
    assert target.valid is not None
    out[~target.valid] = np.nan
    header = target.wcs.to_header()
    header["BUNIT"] = ("solMass", "M500c limit")
    header["COMPLETE"] = (float(level), "completeness of the limit")
    header["REDSHIFT"] = (float(z), "redshift of the limit")
    header["SELFN"] = (result.method, "selection function method")
    meta = result.table.schema.metadata or {}
    if b"clusterfw.run" in meta:
        header["RUN"] = json.dumps(json.loads(meta[b"clusterfw.run"]))[:68]
    header.add_history("clusterfw selfn mass-limit map")
    hdu = fits.PrimaryHDU(out, header=header)
    return write_atomic(Path(path), lambda tmp: hdu.writeto(tmp, overwrite=True))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from clusterfw.core.atomic import write_atomic

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    out = write_atomic(path, write)
    _plt().close(fig)
    return out


def plot_completeness_vs_mass(table: pa.Table, path: Path, ax: Any | None = None) -> Path | None:
    """Completeness against M500c, one line per redshift cell, with 1σ errors."""
    plt = _plt()
    m_edges, z_edges, comp, err, _ = _cells(overall(table))
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
    mc = np.sqrt(m_edges[1:] * m_edges[:-1])
    for iz in range(z_edges.size - 1):
        ax.errorbar(
            mc,
            comp[:, iz],
            yerr=err[:, iz],
            marker="o",
            ms=3,
            capsize=2,
            label=f"selfn {z_edges[iz]:.2f} ≤ z < {z_edges[iz + 1]:.2f}",
        )
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("M500c [Msun]")
    ax.set_ylabel("completeness")
    ax.legend(fontsize=7)
    if fig is None:
        return None
    fig.tight_layout()
    return _save(fig, path)


def plot_contour(table: pa.Table, path: Path, level: float = 0.9) -> Path:
    """Completeness in the (z, M500c) plane with the ``level`` contour."""
    plt = _plt()
    m_edges, z_edges, comp, _, _ = _cells(overall(table))
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    im = ax.pcolormesh(z_edges, m_edges, comp, cmap="viridis", vmin=0, vmax=1)
    zc = 0.5 * (z_edges[1:] + z_edges[:-1])
    mc = np.sqrt(m_edges[1:] * m_edges[:-1])
    if comp.shape[0] > 1 and comp.shape[1] > 1 and np.isfinite(comp).all():
        cs = ax.contour(zc, mc, comp, levels=[level], colors="w", linewidths=2)
        ax.clabel(cs, fmt={level: f"{100 * level:g} %"}, fontsize=8)
    else:
        limits = [mass_limit(m_edges, z_edges, comp, level, float(z)) for z in zc]
        ax.plot(zc, limits, "w-o", label=f"{100 * level:g} % limit")
    ax.set_yscale("log")
    ax.set_xlabel("redshift")
    ax.set_ylabel("M500c [Msun]")
    fig.colorbar(im, ax=ax, label="completeness")
    fig.tight_layout()
    return _save(fig, path)


def plot_selection(table: pa.Table, directory: Path, level: float = 0.9) -> list[Path]:
    """``selfn_completeness.png`` and ``selfn_contour.png`` in ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = [plot_completeness_vs_mass(table, d / "selfn_completeness.png")]
    out.append(plot_contour(table, d / "selfn_contour.png", level))
    return [p for p in out if p is not None]
