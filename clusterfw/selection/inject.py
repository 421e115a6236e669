"""Injection targets: where model clusters can go, and rendering them into copies of the maps.

A target is every layer a run's finders use. Layers that can take injections:

- ``mm`` flat maps (one FITS image per band, one grid): tSZ at each band's frequency (and kSZ),
  convolved with the band's Gaussian beam, in the file's own units;
- ``ymap`` flat maps: Compton-y convolved with the map's beam (``BEAMFWHM``; none: unsmoothed);
- ``xray`` counts images (on their own grid): the simulator's truncated β-model
  (:func:`clusterfw.sim.xray.paint_beta_models`) with the flux of the simulator's L_X–M relation
  (:mod:`clusterfw.sim.observables`, scatter correlated with the Y scatter), times the file's
  ``ECF`` and ``EXPOSURE`` (extension or keyword), convolved with its PSF and Poisson-drawn;
- ``optical`` images (on their own grid): the simulator's member galaxies (richness from its
  λ–M relation), painted with the optical renderer and the file's PSF, depth and units;
- ``stellar_mass`` maps (on their own grid): the simulator's stellar mass as a projected NFW
  (:mod:`clusterfw.selection.inject_optical`).

Any other layer kind, HEALPix maps, mosaics, and skies held in memory by a reader plugin are
refused with one line naming the finder and the layer (:class:`InjectionUnsupported`).
The user's files are never written: injected copies go to a temporary directory.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft

from clusterfw.core.errors import ClusterfwError
from clusterfw.selection.inject_optical import (
    OpticalFacts,
    StellarMassFacts,
    draw_galaxies,
    faint_limit,
    optical_facts,
    render_members,
    render_stellar_mass,
    stellar_facts,
)
from clusterfw.selection.model import ModelClusters, ScalingModel, y_stamp
from clusterfw.sim.instrument import beam_transfer, ell_grid, tsz_uk_per_y

INJECTABLE_KINDS = ("mm", "ymap", "xray", "optical", "stellar_mass")


class InjectionUnsupported(ClusterfwError):
    """A finder's layer cannot take injections."""


@dataclass
class InjectionBand:
    """One band file of an injectable layer."""

    path: Path
    hdu: int
    scale: float  # stored value × scale = layer unit (µK_CMB or y)
    beam_fwhm_arcmin: float | None
    uk_per_y: float | None  # None: a y map (signal in y)
    xray: XrayFacts | None = None  # an X-ray counts image (on its own grid)
    optical: OpticalFacts | None = None  # an optical image (on its own grid)
    stellar: StellarMassFacts | None = None  # a stellar-mass map (on its own grid)

    @property
    def own_grid(self) -> bool:
        """Whether the band is rendered on its own pixel grid (X-ray, optical, stellar mass)."""
        return self.xray is not None or self.optical is not None or self.stellar is not None

    @property
    def grid(self) -> tuple[Any, tuple[int, int], float] | None:
        """``(wcs, shape, pixel_arcmin)`` of an own-grid band (None for mm and y bands)."""
        if self.xray is not None:
            return self.xray.wcs, self.xray.shape, self.xray.pixel_arcsec / 60.0
        if self.optical is not None:
            return self.optical.wcs, self.optical.shape, self.optical.pixel_arcsec / 60.0
        if self.stellar is not None:
            return self.stellar.wcs, self.stellar.shape, self.stellar.pixel_arcmin
        return None


@dataclass
class XrayFacts:
    """What turns a cluster into counts in one X-ray image."""

    wcs: Any
    shape: tuple[int, int]
    pixel_arcsec: float
    ecf: float  # counts/s per erg/s/cm²
    exposure: Any  # seconds: a map of the image's shape, or one number
    psf_fwhm_arcsec: float


@dataclass
class InjectionTarget:
    """The grid shared by the injectable layers and their band files.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
    shape : tuple of int
    pixel_arcmin : float
    bands : list of InjectionBand
    valid : numpy.ndarray
        Pixels finite in every band of every injectable layer.
    """

    wcs: Any
    shape: tuple[int, int]
    pixel_arcmin: float
    bands: list[InjectionBand] = field(default_factory=list)
    valid: np.ndarray | None = None

    @property
    def paths(self) -> list[Path]:
        """The files injections are written into (copies)."""
        return [b.path for b in self.bands]


def _flat_file(layer: Any, finder: str) -> list[Any]:
    from clusterfw.core.layers.pixelisation import FlatImage

    if not isinstance(layer.pixelisation, FlatImage):
        what = type(layer.pixelisation).__name__
        where = layer.paths[0] if layer.paths else layer.name
        raise InjectionUnsupported(
            f"{where}: finder {finder!r} uses layer {layer.name!r} ({what}); "
            "injections go into flat single-file maps only"
        )
    return [band.files[0] for band in layer.bands]


def build_target(
    sky: Any, finders: Sequence[Any], finder_layers: Sequence[Sequence[str]]
) -> InjectionTarget:
    """The injection target of a run's sky and finders.

    Parameters
    ----------
    sky : LayerSky (or an in-memory Sky, refused)
    finders : sequence of Finder
    finder_layers : sequence of tuple of str
        Each finder's layers (:func:`clusterfw.core.pipeline.check_plugins`).

    Raises
    ------
    InjectionUnsupported
        Naming the finder and the layer that cannot take injections.
    """
    from astropy.io import fits

    from clusterfw.core.layers.model import LayerSky, MmBand, YBand
    from clusterfw.core.layers.pixelisation import grid_offset

    if not isinstance(sky, LayerSky):
        name = finders[0].name if finders else "?"
        raise InjectionUnsupported(
            f"finder {name!r}: the maps were read whole by a reader plugin "
            f"({type(sky).__name__}); injections go into flat FITS layers only"
        )
    target: InjectionTarget | None = None
    seen: set[str] = set()
    own_bands: list[InjectionBand] = []  # X-ray, optical, stellar mass: each on its own grid
    for finder, names in zip(finders, finder_layers, strict=True):
        for name in names:
            layer = sky[name]
            if layer.kind not in INJECTABLE_KINDS:
                where = layer.paths[0] if layer.paths else layer.name
                raise InjectionUnsupported(
                    f"{where}: finder {finder.name!r} uses layer {layer.name!r} of "
                    f"kind {layer.kind!r}, which cannot take injections (only "
                    f"{', '.join(INJECTABLE_KINDS)})"
                )
            if name in seen:
                continue
            seen.add(name)
            files = _flat_file(layer, finder.name)
            if layer.kind == "xray":
                own_bands.extend(_xray_band(f) for f in files)
                continue
            if layer.kind == "optical":
                for band, f in zip(layer.bands, files, strict=True):
                    own_bands.append(
                        InjectionBand(
                            Path(f.path),
                            f.hdu,
                            f.scale,
                            None,
                            None,
                            optical=optical_facts(f, getattr(band.facts, "name", band.name)),
                        )
                    )
                continue
            if layer.kind == "stellar_mass":
                own_bands.extend(
                    InjectionBand(
                        Path(f.path), f.hdu, f.scale, None, None, stellar=stellar_facts(f)
                    )
                    for f in files
                )
                continue
            for band, f in zip(layer.bands, files, strict=True):
                if target is None:
                    target = InjectionTarget(f.wcs, tuple(f.shape), f.pixel_arcmin)
                elif tuple(f.shape) != target.shape or grid_offset(f.wcs, target.wcs) != (0, 0):
                    raise InjectionUnsupported(
                        f"{f.path}: layer {layer.name!r} is not on the grid of "
                        f"{target.bands[0].path}; injections need one pixel grid"
                    )
                facts = band.facts
                beam: float | None
                per_y: float | None
                if isinstance(facts, MmBand):
                    beam, per_y = facts.beam_fwhm_arcmin, float(tsz_uk_per_y(facts.freq_ghz))
                elif isinstance(facts, YBand):
                    beam, per_y = facts.beam_fwhm_arcmin, None
                else:  # pragma: no cover - kinds are checked above
                    raise InjectionUnsupported(f"{f.path}: unknown band type")
                target.bands.append(InjectionBand(Path(f.path), f.hdu, f.scale, beam, per_y))
    if target is None and own_bands:  # no mm or y layer: the first own-grid file's grid
        grid = own_bands[0].grid
        assert grid is not None
        target = InjectionTarget(grid[0], grid[1], grid[2])
    if target is None:
        raise ClusterfwError("no finder layer to inject into")
    valid = np.ones(target.shape, dtype=bool)
    for b in target.bands:
        with fits.open(b.path, memmap=False) as hdul:
            valid &= np.isfinite(np.asarray(hdul[b.hdu].data, dtype=np.float64))
    if not target.bands:  # no mm or y layer: the own-grid files on the first one's grid
        first = own_bands[0]
        if first.xray is not None:  # X-ray: exposed pixels of the first image
            valid &= np.broadcast_to(np.asarray(first.xray.exposure, float) > 0, target.shape)
        for b in own_bands:
            g = b.grid
            assert g is not None
            if b.xray is None and _same_grid(g[0], g[1], target):
                with fits.open(b.path, memmap=False) as hdul:
                    valid &= np.isfinite(np.asarray(hdul[b.hdu].data, dtype=np.float64))
    target.bands.extend(own_bands)
    target.valid = valid
    return target


def _same_grid(wcs: Any, shape: tuple[int, int], target: InjectionTarget) -> bool:
    from clusterfw.core.layers.pixelisation import grid_offset

    try:
        return tuple(shape) == tuple(target.shape) and grid_offset(wcs, target.wcs) == (0, 0)
    except Exception:  # grids that cannot be compared are not the same grid
        return False


def _xray_band(f: Any) -> InjectionBand:
    """An X-ray counts image as an injection band (``ECF``, ``EXPOSURE`` and ``PSFFWHM`` from the
    file, as :func:`clusterfw.sim.xray.write_xray` writes them)."""
    from astropy.io import fits

    path = Path(f.path)
    with fits.open(path, memmap=False) as hdul:
        hdr = hdul[f.hdu].header
        if "ECF" not in hdr:
            raise InjectionUnsupported(
                f"{path}: X-ray image without an ECF keyword (counts/s per erg/s/cm²); "
                "injections need it to turn flux into counts"
            )
        names = [h.name for h in hdul]
        if "EXPOSURE" in names:
            exposure: Any = np.asarray(hdul["EXPOSURE"].data, dtype=np.float64)
        elif "EXPOSURE" in hdr:
            exposure = float(hdr["EXPOSURE"])
        else:
            raise InjectionUnsupported(
                f"{path}: X-ray image without an EXPOSURE extension or keyword; injections "
                "need the exposure"
            )
        psf = float(hdr.get("PSFFWHM", 0.0))
        ecf = float(hdr["ECF"])
    facts = XrayFacts(f.wcs, tuple(f.shape), float(f.pixel_arcmin) * 60.0, ecf, exposure, psf)
    return InjectionBand(path, f.hdu, f.scale, None, None, facts)


def xray_counts(
    facts: XrayFacts,
    clusters: ModelClusters,
    ra: np.ndarray,
    dec: np.ndarray,
    rng: np.random.Generator,
    preset: str = "erosita",
    y_scatter_ln: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of the clusters in one X-ray image: (Poisson counts image, expected counts per
    cluster inside ``rmax R500`` before the PSF).

    L_X from the simulator's L_X–M relation with its lognormal scatter, correlated with the
    clusters' Y scatter (``y_scatter_ln``, σ_lnY) as in
    :func:`clusterfw.sim.observables.draw_observables`; the β-model shape (β, r_c, truncation)
    of the simulator's ``preset``.
    """
    from clusterfw.sim import observables as obs
    from clusterfw.sim import sz
    from clusterfw.sim import xray as sx

    cfg = obs.ObservablesConfig()
    p = sx.get_preset(preset)
    n = len(clusters)
    # the clusters' standardised Y deviates (zero when Y was not scattered)
    dy = np.log(clusters.y500_sr / clusters.y500_median_sr)
    g_y = dy / y_scatter_ln if y_scatter_ln > 0 else np.zeros(n)
    rho = cfg.corr_y_lx
    g = rho * g_y + np.sqrt(max(1.0 - rho * rho, 0.0)) * rng.standard_normal(n)
    lx = obs.lx500_median(clusters.m500c, clusters.z, cfg) * np.exp(cfg.sigma_ln_lx * g)
    t_kev = sz.temperature_kev(clusters.m500c, clusters.z)
    fx = obs.flux_500(lx, clusters.z, t_kev)
    total = fx * sx.beta_cylinder_to_sphere(p.beta, p.rc_r500, p.rmax_r500)
    x, y = facts.wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
    flux = np.zeros(facts.shape)
    pix_arcmin = facts.pixel_arcsec / 60.0
    sx.paint_beta_models(
        flux,
        np.asarray(x, float),
        np.asarray(y, float),
        clusters.theta500_arcmin / pix_arcmin,
        total,
        p.beta,
        p.rc_r500,
        p.rmax_r500,
    )
    if facts.psf_fwhm_arcsec > 0:
        flux = sx.gaussian_convolve(flux, facts.psf_fwhm_arcsec / facts.pixel_arcsec)
        np.maximum(flux, 0.0, out=flux)
    expected = flux * facts.ecf * np.broadcast_to(np.asarray(facts.exposure, float), facts.shape)
    ix = np.clip(np.round(np.asarray(x)).astype(np.int64), 0, facts.shape[1] - 1)
    iy = np.clip(np.round(np.asarray(y)).astype(np.int64), 0, facts.shape[0] - 1)
    expo = np.broadcast_to(np.asarray(facts.exposure, float), facts.shape)[iy, ix]
    return rng.poisson(expected), total * facts.ecf * expo


def allowed_pixels(target: InjectionTarget, edge_arcmin: float) -> np.ndarray:
    """Pixels at least ``edge_arcmin`` from the map edge and from any masked (NaN) pixel."""
    from scipy import ndimage

    assert target.valid is not None
    padded = np.pad(target.valid, 1, constant_values=False)
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1] * target.pixel_arcmin
    return dist >= max(edge_arcmin, target.pixel_arcmin)


def choose_positions(
    allowed: np.ndarray,
    n: int,
    min_sep_pix: float,
    rng: np.random.Generator,
    avoid_xy: np.ndarray | None = None,
    avoid_pix: float = 0.0,
    tries: int = 20,
) -> np.ndarray:
    """Up to ``n`` pixel positions ``(n, 2)`` (x, y) in ``allowed``, pairwise ``>= min_sep_pix``
    apart and ``>= avoid_pix`` from every ``avoid_xy`` (e.g. real detections).

    Positions are uniform within a pixel; fewer than ``n`` come back when the map is full.
    """
    from scipy.spatial import cKDTree

    iy, ix = np.nonzero(allowed)
    if iy.size == 0 or n <= 0:
        return np.zeros((0, 2))
    cand_n = max(tries * n, 64)
    pick = rng.integers(0, iy.size, cand_n)
    xy = np.column_stack([ix[pick], iy[pick]]) + rng.uniform(-0.5, 0.5, (cand_n, 2))
    if avoid_xy is not None and len(avoid_xy) and avoid_pix > 0:
        d, _ = cKDTree(np.asarray(avoid_xy, float)).query(xy)
        xy = xy[d >= avoid_pix]
    chosen: list[np.ndarray] = []
    cell = max(min_sep_pix, 1e-9)
    buckets: dict[tuple[int, int], list[np.ndarray]] = {}
    for p in xy:
        key = (int(p[0] // cell), int(p[1] // cell))
        ok = True
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for q in buckets.get((key[0] + dx, key[1] + dy), ()):
                    if (p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2 < min_sep_pix**2:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
        if ok:
            chosen.append(p)
            buckets.setdefault(key, []).append(p)
            if len(chosen) == n:
                break
    return np.array(chosen).reshape(-1, 2)


def _beam_convolve(stamp: np.ndarray, fwhm: float | None, pix: float) -> np.ndarray:
    if not fwhm:
        return stamp
    ny, nx = stamp.shape
    ell, _, _ = ell_grid(ny, nx, pix)
    return sfft.irfft2(sfft.rfft2(stamp) * beam_transfer(ell, fwhm), s=(ny, nx))


def render(
    target: InjectionTarget, clusters: ModelClusters, xy: np.ndarray, rmax: float
) -> list[tuple[int, slice, slice, list[np.ndarray]]]:
    """Each cluster's stamp in every band (layer units), with where it goes in the map.

    Returns
    -------
    list of (cluster index, rows, cols, [stamp per band])
    """
    pix = target.pixel_arcmin
    ny, nx = target.shape
    beams = [b.beam_fwhm_arcmin or 0.0 for b in target.bands if not b.own_grid] or [0.0]
    out = []
    for i in range(len(clusters)):
        x, y = float(xy[i, 0]), float(xy[i, 1])
        cx, cy = int(round(x)), int(round(y))
        reach = rmax * clusters.theta500_arcmin[i] + 4.0 * max(beams)
        half = int(min(math.ceil(reach / pix) + 2, 1024))
        ystamp = y_stamp(
            float(clusters.theta500_arcmin[i]),
            float(clusters.y500_sr[i]),
            x - cx,
            y - cy,
            half,
            pix,
            rmax,
        )
        y0, y1 = max(cy - half, 0), min(cy + half + 1, ny)
        x0, x1 = max(cx - half, 0), min(cx + half + 1, nx)
        sy = slice(y0 - (cy - half), y1 - (cy - half))
        sx = slice(x0 - (cx - half), x1 - (cx - half))
        per_band = []
        smoothed: dict[float, np.ndarray] = {}
        for b in target.bands:
            if b.own_grid:  # rendered on its own grid by write_injected
                per_band.append(np.zeros((0, 0)))
                continue
            key = b.beam_fwhm_arcmin or 0.0
            if key not in smoothed:
                smoothed[key] = _beam_convolve(ystamp, b.beam_fwhm_arcmin, pix)
            sig = smoothed[key]
            if b.uk_per_y is not None:
                sig = sig * (b.uk_per_y + float(clusters.ksz_uk_per_y[i]))
            per_band.append(sig[sy, sx])
        out.append((i, slice(y0, y1), slice(x0, x1), per_band))
    return out


def write_injected(
    target: InjectionTarget,
    clusters: ModelClusters,
    xy: np.ndarray,
    rmax: float,
    directory: Path,
    rng: np.random.Generator | None = None,
    model: ScalingModel | None = None,
) -> dict[Path, Path]:
    """Copies of the target's files with the clusters added, in ``directory``.

    Optical and stellar-mass bands share one draw of each cluster's richness, stellar mass and
    member galaxies (:func:`~clusterfw.selection.inject_optical.draw_galaxies`, with ``model``'s
    Y scatter; made only when the target has such bands, so runs without them use ``rng`` as
    before).

    Returns
    -------
    dict
        Original path → injected copy (same file name; each in its own sub-folder, so files of
        equal names from different folders do not collide).
    """
    from astropy.io import fits

    stamps = render(target, clusters, xy, rmax)
    rng = rng or np.random.default_rng(0)
    ra, dec = target.wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    ra, dec = np.asarray(ra, float) % 360.0, np.asarray(dec, float)
    optical = [b.optical for b in target.bands if b.optical is not None]
    galaxies = None
    if optical or any(b.stellar is not None for b in target.bands):
        galaxies = draw_galaxies(
            clusters,
            ra,
            dec,
            model or ScalingModel(),
            rng,
            tuple(dict.fromkeys(o.filter for o in optical)),
            faint_limit(optical) if optical else 24.0,
        )
    mapping: dict[Path, Path] = {}
    for k, band in enumerate(target.bands):
        sub = directory / f"b{k}"
        sub.mkdir(parents=True, exist_ok=True)
        dest = sub / band.path.name
        with fits.open(band.path, memmap=False) as hdul:
            data = np.array(hdul[band.hdu].data, dtype=np.float64)
            if band.xray is not None:
                counts, _ = xray_counts(
                    band.xray,
                    clusters,
                    ra,
                    dec,
                    rng,
                    y_scatter_ln=(model or ScalingModel()).y500_scatter_ln,
                )
                data += counts / band.scale
            elif band.optical is not None:
                assert galaxies is not None
                data += render_members(band.optical, galaxies.members) / band.scale
            elif band.stellar is not None:
                assert galaxies is not None
                add = render_stellar_mass(band.stellar, clusters, ra, dec, galaxies)
                data += add / band.scale
            else:
                add = np.zeros(target.shape)
                for _, rows, cols, per_band in stamps:
                    add[rows, cols] += per_band[k]
                data += add / band.scale
            hdu = hdul[band.hdu]
            keep = hdu.data.dtype.kind == "f" or band.xray is not None  # counts stay integers
            dtype = hdu.data.dtype if keep else np.float32
            hdu.data = data.astype(dtype)
            hdul.writeto(dest, overwrite=True)
        mapping[band.path] = dest
    return mapping


def remove_tree(path: Path) -> None:
    """Remove a temporary directory of injected copies (ignore what is already gone)."""
    shutil.rmtree(path, ignore_errors=True)
