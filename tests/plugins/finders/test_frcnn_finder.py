"""The ``frcnn`` finder through ``clusterfw run`` on a rendered g, r, i field (a small random
network, so the test checks the plumbing, not the training), its forced scores, and the
one-line errors for inputs it cannot use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from clusterfw.plugins.finders.frcnn.model import build_model, save_weights
    from clusterfw.plugins.finders.resnet.calibrate import Platt

    d = tmp_path_factory.mktemp("frcnn_w")
    torch.manual_seed(3)
    model = build_model(width=4, window=32, head=16)
    meta = {"pixel_arcsec": 4.208, "soft_nmgy": 0.2, "bands": ["g", "r", "i"]}
    save_weights(model, str(d / "frcnn.safetensors"), meta)
    Platt(1.0, 0.0).save(d / "platt.json")
    return d / "frcnn.safetensors"


@pytest.fixture(scope="module")
def field_files(tmp_path_factory) -> dict[str, Path]:
    from clusterfw.sim.optical import OpticalFootprint, render_optical, write_optical
    from clusterfw.sim.shards.common import halo_table

    d = tmp_path_factory.mktemp("frcnn_sky")
    rng = np.random.default_rng(5)
    halos = halo_table(np.array([5e14]), np.array([0.3]), np.array([60.0]), np.array([-45.0]), rng)
    fp = OpticalFootprint.from_center(60.0, -45.0, 0.07, 0.526)
    field = render_optical(halos, fp, "des-coarse", 2, ("g", "r", "i"))
    paths = write_optical(field, d, "opt", truth=False)
    return {p.stem.split("_")[-1]: p for p in paths if p.suffix == ".fits"}


@pytest.fixture
def cli(capsys):
    from clusterfw.core import cli as cli_mod

    def call(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            cli_mod.cli.main([str(a) for a in args])
            rc = 0
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out, err = capsys.readouterr()
        return rc, out, err

    return call


def _one_line_error(rc: int, out: str, err: str, *words: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clusterfw: error: "), err
    for w in words:
        assert w in lines[0], lines[0]


def test_run_writes_candidates_with_photoz_columns(cli, field_files, weights, tmp_path):
    out = tmp_path / "cat.parquet"
    files = [field_files[b] for b in "gri"]
    rc, _, err = cli("run", *files, "--finder", "frcnn", "-o", f"frcnn.weights={weights}",
                     "-o", "frcnn.p_min=0", "--out", out)  # fmt: skip
    assert rc == 0, err
    t = pq.read_table(out)
    for col in ("frcnn_z", "frcnn_z_err", "frcnn_box_arcmin", "frcnn_raw_score", "frcnn_n_red",
                "frcnn_z_alt", "frcnn_lambda"):  # fmt: skip
        assert col in t.column_names
    # a richness exactly where there is a redshift
    lam = t["frcnn_lambda"].to_numpy(zero_copy_only=False)
    has_z = np.isfinite(t["frcnn_z"].to_numpy(zero_copy_only=False))
    assert np.array_equal(np.isfinite(lam), has_z)
    # a second red sequence is only reported beside a first one, and widens the error bar
    z_alt = t["frcnn_z_alt"].to_numpy(zero_copy_only=False)
    zz = t["frcnn_z"].to_numpy(zero_copy_only=False)
    assert not np.any(np.isfinite(z_alt) & ~np.isfinite(zz))
    two = np.isfinite(z_alt)
    assert np.all(t["frcnn_z_err"].to_numpy()[two] >= np.abs(z_alt - zz)[two] - 1e-6)
    s = t["score"].to_numpy()
    assert t.num_rows > 0 and np.all((s >= 0) & (s <= 1))
    # Platt(1, 0) of the logit is the raw score itself; boxes without a red-sequence excess
    # (frcnn_z NaN) are halved (no_red_weight = 0.5, the validation-picked default)
    z = t["frcnn_z"].to_numpy(zero_copy_only=False)
    factor = np.where(np.isfinite(z), 1.0, 0.5)
    assert np.allclose(s, factor * t["frcnn_raw_score"].to_numpy(), atol=1e-5)
    bcg = t["frcnn_bcg_centred"].to_numpy(zero_copy_only=False)
    assert not np.any(bcg & ~np.isfinite(z))  # a BCG needs a red-sequence redshift
    box = t["frcnn_box_arcmin"].to_numpy()
    assert np.all((box > 0) & (box < 0.07 * 60 * 1.5))
    # every candidate lies on the field
    assert np.all(np.abs(t["dec"].to_numpy() + 45.0) < 0.04)


def test_photometry_gets_each_bands_own_psf(cli, field_files, weights, tmp_path, monkeypatch):
    """The source photometry of ``clusterfw run`` corrects each band by its own PSF (DES-like
    seeing differs by band: with one FWHM for all, g - r came out too red on the mosaics of a
    3° universe and the red-sequence redshifts +0.03 (1 + z) too high)."""
    import clusterfw.plugins.finders.frcnn.photoz as photoz

    seen = []
    real = photoz.find_sources

    def spy(images, pixel_arcsec, psf_fwhm_arcsec):
        seen.append(np.asarray(psf_fwhm_arcsec, float).copy())
        return real(images, pixel_arcsec, psf_fwhm_arcsec)

    monkeypatch.setattr(photoz, "find_sources", spy)
    out = tmp_path / "cat.parquet"
    files = [field_files[b] for b in "gri"]
    rc, _, err = cli("run", *files, "--finder", "frcnn", "-o", f"frcnn.weights={weights}",
                     "-o", "frcnn.p_min=0", "--out", out)  # fmt: skip
    assert rc == 0, err
    headers = [fits.getheader(field_files[b]) for b in "gri"]
    keys = [k for k in ("PSF_FWHM", "SEEING", "PSFFWHM") if k in headers[0]]
    assert keys, list(headers[0].keys())
    want = np.array([float(h[keys[0]]) for h in headers])
    assert np.ptp(want) > 0.1  # the bands' seeing differs
    assert seen and all(np.allclose(v, want) for v in seen), (seen, want)


def test_forced_scores_on_and_off_the_image(field_files, weights):
    from clusterfw.plugins.finders.frcnn.finder import FrcnnFinder

    imgs = np.stack([fits.getdata(field_files[b]).astype(np.float32) for b in "gri"])
    finder = FrcnnFinder({"weights": str(weights)})
    n = imgs.shape[1]
    xe = np.array([n / 2, 10.0, n + 50.0])
    ye = np.array([n / 2, 20.0, n / 2])
    raw = finder.score_window_boxes(imgs, 0.526, xe, ye)
    assert np.all((raw[:2] > 0) & (raw[:2] < 1)) and np.isnan(raw[2])
    # the same position scores the same whatever else is asked
    again = finder.score_window_boxes(imgs, 0.526, xe[:1], ye[:1])
    assert again[0] == pytest.approx(raw[0], rel=1e-5)


def test_missing_band_is_one_line(cli, field_files, weights, tmp_path):
    out = tmp_path / "cat.parquet"
    rc, o, e = cli("run", field_files["g"], field_files["r"], "--finder", "frcnn",
                   "-o", f"frcnn.weights={weights}", "--out", out)  # fmt: skip
    _one_line_error(rc, o, e, "frcnn", "lacks band(s) i")
    assert not out.exists()


def test_coarse_pixels_are_refused(cli, field_files, weights, tmp_path):
    from clusterfw.plugins.finders.frcnn.prep import block_sum

    files = []
    for b in "gri":
        with fits.open(field_files[b]) as hdul:
            h = hdul[0].header.copy()
            data = block_sum(hdul[0].data.astype(np.float32), 10)
        for key in ("CDELT1", "CDELT2"):
            if key in h:
                h[key] *= 10
        for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            if key in h:
                h[key] *= 10
        h["CRPIX1"] = (h["CRPIX1"] - 0.5) / 10 + 0.5
        h["CRPIX2"] = (h["CRPIX2"] - 0.5) / 10 + 0.5
        p = tmp_path / f"coarse_{b}.fits"
        fits.PrimaryHDU(data, h).writeto(p)
        files.append(p)
    out = tmp_path / "cat.parquet"
    rc, o, e = cli("run", *files, "--finder", "frcnn", "-o", f"frcnn.weights={weights}",
                   "--out", out)  # fmt: skip
    _one_line_error(rc, o, e, 'optical pixels of 5.26" are coarser than')
    assert not out.exists()


def test_corrupt_weights_are_one_line(cli, field_files, weights, tmp_path):
    bad = tmp_path / "frcnn.safetensors"
    bad.write_bytes(weights.read_bytes()[:5000])
    (tmp_path / "platt.json").write_text((weights.parent / "platt.json").read_text())
    out = tmp_path / "cat.parquet"
    rc, o, e = cli("run", *[field_files[b] for b in "gri"], "--finder", "frcnn",
                   "-o", f"frcnn.weights={bad}", "--out", out)  # fmt: skip
    _one_line_error(rc, o, e, str(bad), "not a readable safetensors file")
    assert not out.exists()


def _train_cli(*args: object) -> tuple[int, str, str]:
    """``clusterfw train ...`` in-process, with the plugin commands added."""
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


def test_train_init_refused_before_any_simulation(weights, tmp_path):
    cli = _train_cli
    out = tmp_path / "run"
    out.mkdir()
    own = out / "frcnn.safetensors"
    own.write_bytes(weights.read_bytes())
    rc, o, e = cli("train", "frcnn", "--out", out, "--init", own, "--quiet")
    _one_line_error(rc, o, e, "--init is the file this run writes")
    assert own.read_bytes() == weights.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(weights.read_bytes()[:3000])
    rc, o, e = cli("train", "frcnn", "--out", out, "--init", bad, "--quiet")
    _one_line_error(rc, o, e, str(bad), "not a readable safetensors file")
    assert not (out / "data").exists() and not (out / "metrics.jsonl").exists()


def test_cached_training_folder_of_the_wrong_size_is_refused(tmp_path):
    from clusterfw.core.errors import InputError
    from clusterfw.plugins.finders.frcnn.train import FIELD_OPTIONS, TrainConfig, ensure_fields
    from clusterfw.sim.shards.common import write_dataset
    from clusterfw.sim.shards.detection import KIND, OpticalFieldsConfig, field_samples

    fcfg = OpticalFieldsConfig(**FIELD_OPTIONS)
    data = tmp_path / "data"
    write_dataset(data / "train_s11", KIND, 11, fcfg.model_dump(mode="json"), 2, 2,
                  field_samples(fcfg, 11, 2), progress=False)  # fmt: skip
    cfg = TrainConfig(out=tmp_path / "run", data_dir=data, n_train=6, n_chunks=2)
    with pytest.raises(InputError, match="holds 2 fields, this run needs 3"):
        ensure_fields(cfg, progress=False)
    assert not (data / "train_s12").exists()  # refused before simulating anything else
