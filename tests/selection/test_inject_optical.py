"""Injections into optical images (the simulator's members) and stellar-mass maps."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

RA0, DEC0 = 30.0, -20.0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wcs(n: int, pix_arcsec: float) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    w.wcs.cdelt = [-pix_arcsec / 3600, pix_arcsec / 3600]
    w.wcs.cunit = ["deg", "deg"]
    return w


def _optical_file(
    path: Path,
    band: str,
    n: int = 800,
    pix: float = 1.2,
    noise: float = 0.0,
    magzero: float | None = None,
    maglim: float | None = 23.0,
) -> Path:
    """An optical image as the layer readers take it (FILTER, BUNIT, PSFFWHM, MAGLIM)."""
    hdr = _wcs(n, pix).to_header()
    hdr["FILTER"] = band
    if magzero is None:
        hdr["BUNIT"] = "nanomaggy"
    else:
        hdr["BUNIT"] = "count"
        hdr["MAGZERO"] = magzero
    hdr["PSFFWHM"] = 1.1
    if maglim is not None:
        hdr["MAGLIM"] = maglim
    data = np.random.default_rng(4).normal(0.0, noise, (n, n)) if noise else np.zeros((n, n))
    fits.PrimaryHDU(data.astype(np.float32), hdr).writeto(path)
    return path


def _stellar_file(path: Path, n: int = 80, pix_arcmin: float = 0.5) -> Path:
    hdr = _wcs(n, pix_arcmin * 60).to_header()
    hdr["BUNIT"] = "solMass"
    hdr["LAYER"] = "stellar_mass"
    fits.PrimaryHDU(np.zeros((n, n), np.float32), hdr).writeto(path)
    return path


class _Finder:
    name = "fake"


def _frcnn_calibration(path: Path) -> Path:
    """A calibration with an frcnn threshold (the shipped default has none)."""
    import json

    path.write_text(
        json.dumps(
            {
                "format": "clusterfw.calibration",
                "version": 1,
                "selection": {"radius_arcmin": 1.0},
                "finders": {"frcnn": {"score_kind": "probability", "threshold": 0.5}},
            }
        )
    )
    return path


def _target(paths: list[Path], layers: tuple[str, ...]):
    from clusterfw.core.plugins import Registry
    from clusterfw.core.runner import read_inputs
    from clusterfw.selection.inject import build_target

    sky, _ = read_inputs(Registry(), paths, {}, {})
    return build_target(sky, [_Finder()], [layers])


def _clusters(m: float, z: float, n: int = 1, seed: int = 0):
    from clusterfw.selection.model import ScalingModel, draw_clusters

    return draw_clusters(
        np.full(n, m), np.full(n, z), ScalingModel(ksz=False), np.random.default_rng(seed)
    )


def test_richness_and_member_counts_follow_the_simulator():
    """λ from the simulator's λ–M relation; red members above 0.2 L* inside R_λ count λ on
    average (Poisson)."""
    from clusterfw.selection.inject_optical import draw_galaxies
    from clusterfw.selection.model import ScalingModel
    from clusterfw.sim import observables as obs

    n = 30
    cl = _clusters(3e14, 0.3, n)
    gal = draw_galaxies(
        cl,
        np.full(n, RA0),
        np.full(n, DEC0),
        ScalingModel(ksz=False),
        np.random.default_rng(1),
        ("g", "r", "i"),
        23.5,
    )
    med = obs.richness_median(np.array([3e14]), np.array([0.3]), obs.ObservablesConfig())[0]
    assert 40 < med < 80
    dln = np.log(gal.richness / med)
    # σ_lnλ = 0.20 plus the Y deviate's share (uncorrelated by default): mean 0 ± 3σ/√n
    assert abs(dln.mean()) < 3 * 0.25 / np.sqrt(n)
    assert 0.1 < dln.std() < 0.35
    k, lam = gal.richness_members.sum(), gal.richness.sum()
    assert abs(k - lam) < 3 * np.sqrt(lam)
    # members carry each filter's magnitudes, and belong to the clusters drawn
    assert set(np.unique(gal.members["halo_id"])) == set(range(n))
    for b in "gri":
        assert np.all(np.isfinite(gal.members[f"mag_{b}"]))
    # red members of a z = 0.3 cluster are redder in g − r than in r − i (4000 Å break in g)
    red = gal.members["is_red"]
    gr = np.median(gal.members["mag_g"][red] - gal.members["mag_r"][red])
    assert 1.0 < gr < 2.0
    # stellar mass: the central galaxy plus 6e10 Msun per richness unit
    cen = obs.moster13_central_mstar(gal.m200c, cl.z)
    assert np.allclose(gal.mstar_total, cen + 6e10 * gal.richness)


def test_members_land_in_the_optical_image_with_their_flux(tmp_path):
    """The injected image is the members' Sérsic profiles ⊛ PSF: its total is the members'
    flux (nanomaggies, or counts through MAGZERO), centred on the cluster; the user's file and
    the copy's header are unchanged."""
    from clusterfw.selection.inject import write_injected
    from clusterfw.selection.inject_optical import draw_galaxies, faint_limit
    from clusterfw.selection.model import ScalingModel
    from clusterfw.sim.optical.render import mag_to_nanomaggies

    r = _optical_file(tmp_path / "r.fits", "r")
    g = _optical_file(tmp_path / "g.fits", "g", magzero=30.0)
    before = {p: _sha(p) for p in (r, g)}
    target = _target([g, r], ("optical",))
    assert [b.optical.filter for b in target.bands] == ["g", "r"]
    assert target.pixel_arcmin == pytest.approx(1.2 / 60)
    cl = _clusters(5e14, 0.3)
    xy = np.array([[399.5, 399.5]])  # the image centre: (RA0, DEC0)
    mapping = write_injected(target, cl, xy, 5.0, tmp_path / "inj", np.random.default_rng(3))
    for p in (r, g):
        assert _sha(p) == before[p]
    # the same draw as write_injected made (same generator state)
    opt = [b.optical for b in target.bands]
    gal = draw_galaxies(
        cl,
        np.array([RA0]),
        np.array([DEC0]),
        ScalingModel(),
        np.random.default_rng(3),
        ("g", "r"),
        faint_limit(opt),
    )
    assert faint_limit(opt) == 24.0  # MAGLIM(r) + 1
    mem = gal.members
    assert mem["ra"].size > 20
    w = _wcs(800, 1.2)
    x, y = w.world_to_pixel_values(mem["ra"], mem["dec"])
    inside = (x > 20) & (x < 780) & (y > 20) & (y < 780)
    assert inside.all()  # R_λ of a z = 0.3 cluster fits in 16'
    with fits.open(r) as a, fits.open(mapping[r]) as b:
        assert b[0].header == a[0].header  # headers (WCS, FILTER, PSF, depth) unchanged
        added_r = b[0].data.astype(np.float64) - a[0].data
    flux_r = mag_to_nanomaggies(mem["mag_r"]).sum()
    # the simulator's Sérsic painter drops galaxies whose truncation radius is far below a pixel
    # (r_e of a few hundredths of an arcsec: 0.4 % of this cluster's flux); every resolved one
    # lands with its flux
    trunc = np.where(mem["sersic_n"] >= 2, 8.0, 4.0) * mem["r_e_arcsec"] / 1.2
    resolved = mag_to_nanomaggies(mem["mag_r"][trunc > 0.5]).sum()
    assert resolved * (1 - 1e-4) <= added_r.sum() <= flux_r * (1 + 1e-4)
    assert added_r.sum() == pytest.approx(flux_r, rel=0.01)
    assert added_r.min() > -1e-4 * added_r.max()
    yy, xx = np.mgrid[0:800, 0:800]
    cx, cy = (added_r * xx).sum() / added_r.sum(), (added_r * yy).sum() / added_r.sum()
    # flux-weighted centre within a third of R_λ of the cluster (BCG miscentring: 0.17 R_λ)
    from clusterfw.sim.cosmology import angular_diameter_distance
    from clusterfw.sim.optical.members import r_lambda_mpc

    r_lam_pix = np.degrees(r_lambda_mpc(gal.richness)[0] / angular_diameter_distance(0.3)) * 3000
    assert np.hypot(cx - 399.5, cy - 399.5) < r_lam_pix / 3
    with fits.open(g) as a, fits.open(mapping[g]) as b:
        assert b[0].header == a[0].header
        added_g = b[0].data.astype(np.float64) - a[0].data
    flux_g = mag_to_nanomaggies(mem["mag_g"]).sum()
    resolved_g = mag_to_nanomaggies(mem["mag_g"][trunc > 0.5]).sum()
    counts_per_nmgy = 10 ** (0.4 * (30.0 - 22.5))
    assert resolved_g * (1 - 1e-4) <= added_g.sum() / counts_per_nmgy <= flux_g * (1 + 1e-4)
    assert flux_g < flux_r  # members are red


def test_depth_from_the_pixel_noise_without_maglim(tmp_path):
    """Without MAGLIM the depth comes from the image's own noise (the renderer's σ_pix rule)."""
    from clusterfw.sim.optical import render as rnd

    kern = rnd.moffat_kernel(1.1 / 1.2, 3.0)
    sigma = rnd.sigma_pixel(24.0, kern)
    path = _optical_file(tmp_path / "r.fits", "r", n=300, noise=sigma, maglim=None)
    target = _target([path], ("optical",))
    facts = target.bands[0].optical
    assert facts.maglim_from == "pixel noise"
    assert facts.maglim == pytest.approx(24.0, abs=0.02)


def test_optical_image_without_psf_is_refused(tmp_path):
    from clusterfw.selection.inject_optical import OpticalInjectionError

    path = _optical_file(tmp_path / "r.fits", "r", n=100)
    with fits.open(path, mode="update") as h:
        del h[0].header["PSFFWHM"]
    with pytest.raises(OpticalInjectionError, match="without a positive PSFFWHM"):
        _target([path], ("optical",))


def test_stellar_mass_map_gets_the_clusters_stellar_mass(tmp_path):
    from clusterfw.selection.inject import write_injected
    from clusterfw.selection.inject_optical import draw_galaxies
    from clusterfw.selection.model import ScalingModel

    path = _stellar_file(tmp_path / "stellar_mass.fits")
    before = _sha(path)
    target = _target([path], ("stellar_mass",))
    assert target.bands[0].stellar is not None
    cl = _clusters(4e14, 0.4)
    mapping = write_injected(
        target, cl, np.array([[39.5, 39.5]]), 5.0, tmp_path / "inj", np.random.default_rng(5)
    )
    assert _sha(path) == before
    gal = draw_galaxies(
        cl, np.array([RA0]), np.array([DEC0]), ScalingModel(), np.random.default_rng(5)
    )
    with fits.open(path) as a, fits.open(mapping[path]) as b:
        assert b[0].header == a[0].header
        added = b[0].data.astype(np.float64) - a[0].data
    assert added.sum() == pytest.approx(gal.mstar_total[0], rel=1e-5)
    assert 3e12 < gal.mstar_total[0] < 3e13
    assert np.unravel_index(np.argmax(added), added.shape) in {
        (39, 39),
        (39, 40),
        (40, 39),
        (40, 40),
    }


def test_optical_and_stellar_mass_share_one_richness(tmp_path):
    """One draw per cluster: the optical members and the stellar mass come from the same λ."""
    from clusterfw.selection.inject import write_injected
    from clusterfw.selection.inject_optical import draw_galaxies, faint_limit
    from clusterfw.selection.model import ScalingModel
    from clusterfw.sim.optical.render import mag_to_nanomaggies

    r = _optical_file(tmp_path / "r.fits", "r", n=800)
    sm = _stellar_file(tmp_path / "sm.fits")
    target = _target([r, sm], ("optical", "stellar_mass"))
    assert target.pixel_arcmin == pytest.approx(1.2 / 60)  # the first own grid: the optical
    cl = _clusters(5e14, 0.3)
    mapping = write_injected(
        target, cl, np.array([[399.5, 399.5]]), 5.0, tmp_path / "inj", np.random.default_rng(9)
    )
    gal = draw_galaxies(
        cl,
        np.array([RA0]),
        np.array([DEC0]),
        ScalingModel(),
        np.random.default_rng(9),
        ("r",),
        faint_limit([target.bands[0].optical]),
    )
    added_r = fits.getdata(mapping[r]).astype(float) - fits.getdata(r)
    added_m = fits.getdata(mapping[sm]).astype(float) - fits.getdata(sm)
    assert added_r.sum() == pytest.approx(mag_to_nanomaggies(gal.members["mag_r"]).sum(), 0.01)
    assert added_m.sum() == pytest.approx(gal.mstar_total[0], rel=1e-5)


def test_optical_mosaic_is_refused_in_one_line(tmp_path):
    """An optical band of several coadd tiles (a mosaic) cannot take injections: one line
    naming the file, the finder and the layer (the CLI prints it as ``clusterfw: error: ...``)."""
    from clusterfw.selection.inject import InjectionUnsupported

    files = []
    for band in "gri":
        a = _optical_file(tmp_path / f"{band}_t000.fits", band, n=120)
        b = tmp_path / f"{band}_t001.fits"
        hdr = fits.getheader(a)
        hdr["CRVAL1"] = RA0 + 120 * 1.2 / 3600 / np.cos(np.radians(DEC0))
        fits.PrimaryHDU(np.zeros((120, 120), np.float32), hdr).writeto(b)
        files += [a, b]
    with pytest.raises(InjectionUnsupported) as err:
        _target(files, ("optical",))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(str(tmp_path))
    assert "finder 'fake' uses layer 'optical' (Mosaic)" in msg
    assert msg.endswith("injections go into flat single-file maps only")


@pytest.mark.slow
def test_frcnn_selfn_on_a_tiny_universe(tmp_path):
    """``clusterfw selfn -f frcnn`` end to end: clusters injected into the g, r, i images of a
    simulated universe (0.3°, des-coarse pixels) are found by the shipped network (about a
    minute of CPU at high load: slow)."""
    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli
    from clusterfw.sim.config import PatchConfig
    from clusterfw.sim.universe import UniverseConfig, simulate_universe, write_universe

    pytest.importorskip("torch")
    cfg = UniverseConfig(
        patch=PatchConfig(size_deg=0.3, pixel_arcmin=0.5, ra_deg=60.0, dec_deg=-45.0),
        layers=["optical"],
        optical_preset="des-coarse",
    )
    w = write_universe(simulate_universe(cfg, 3), tmp_path / "uni")
    images = [p for p in w["layers"]["optical"] if p.suffix == ".fits"]
    assert [p.name for p in images] == ["optical_g.fits", "optical_r.fits", "optical_i.fits"]
    before = {p: _sha(p) for p in images}
    cal = _frcnn_calibration(tmp_path / "cal.json")
    out, log = tmp_path / "s.parquet", tmp_path / "inj.parquet"
    _add_optional_commands(cli)
    res = CliRunner().invoke(
        cli,
        ["selfn", *map(str, images), "-f", "frcnn", "--calibration", str(cal),
         "--mass-grid", "2e14:1e15:1", "--z-grid", "0.2:0.6:1", "--max-rounds", "1",
         "--per-round", "4", "--max-density", "100", "--min-separation", "5", "--edge", "2",
         "--out", str(out), "--injections", str(log)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert {p: _sha(p) for p in images} == before
    row = pq.read_table(out).to_pylist()[0]
    assert row["n_injected"] == 4
    inj = pq.read_table(log).to_pydict()
    assert len(inj["m500c"]) == 4
    assert all(2e14 <= m <= 1e15 for m in inj["m500c"])
    # massive clusters at z < 0.6 in DES-depth images: the network finds most of them
    assert row["n_recovered"] >= 2
    assert row["completeness"] == pytest.approx(row["n_recovered"] / 4)
