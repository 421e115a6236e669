"""The ``vgg_mass`` estimator and the ``clusterfw train vgg_mass`` command.

Entry point ``vgg_mass`` in the ``clusterfw`` group. Nothing here imports TensorFlow: the
network is built and its weights loaded on the first :meth:`VggMassEstimator.estimate`.

Columns (masses in Msun, M500c):

``vgg_mass_m500c``, ``vgg_mass_m500c_err``
    The network's median mass ``exp(μ)`` and ``M σ`` (σ of ln M from the mean-and-variance
    head); null where no estimate could be made.
``vgg_mass_channels``
    The channel set of the network used (``y``, ``y,xray``, ``y,xray,optical``); ``y_ilc``
    in place of ``y`` when the y cutouts were made from the mm bands by the estimator's
    constrained ILC (:mod:`~clusterfw.plugins.estimators.vgg_mass.ilc`; no ``ymap`` layer).
``vgg_mass_flag``
    uint32 bits: 1 no redshift (none of ``z``, ``<finder>_z``, the catalogue), 2 no valid cutout
    (outside the layers' footprints or NaN at the centre), 4 redshift outside the network's
    training range (the mass is still given: an extrapolation), 8 the Y–M inversion failed.
``vgg_mass_m500c_ysz``, ``vgg_mass_m500c_ysz_err``
    The Y–M inversion baseline (:mod:`~clusterfw.plugins.estimators.vgg_mass.baseline`).
``vgg_mass_z``, ``vgg_mass_z_source``
    The redshift used and where it came from (:mod:`~clusterfw.plugins.estimators.vgg_mass.
    redshifts`).
``vgg_mass_survey``
    The y survey preset the network was trained on (``act``, ``deep``): picked from the
    measured noise of the y cutouts, or forced by ``-o vgg_mass.survey``
    (:mod:`~clusterfw.plugins.estimators.vgg_mass.surveys`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import click
import numpy as np
import pyarrow as pa
from pydantic import Field

from clusterfw.core.errors import ClusterfwError, InputError, PluginError
from clusterfw.core.hookspecs import hookimpl
from clusterfw.core.layers.requirements import LayerRequirement
from clusterfw.core.plugin_api import Estimator, PluginOptions
from clusterfw.core.schema import plugin_field
from clusterfw.core.train_cli import add_train_commands
from clusterfw.plugins.estimators.vgg_mass.surveys import SURVEY_DIRS, WEIGHTS_DIR

FLAG_NO_REDSHIFT = 1
FLAG_NO_CUTOUT = 2
FLAG_Z_OUTSIDE_TRAINING = 4
FLAG_YSZ_FAILED = 8
CHANNEL_SETS = (("y", "xray", "optical"), ("y", "xray"), ("y",))


class VggMassOptions(PluginOptions):
    """``-o vgg_mass.<key>=<value>``."""

    redshifts: Path | None = Field(None, description="catalogue of ra, dec, z (matched within 1')")
    weights: Path | None = Field(
        None, description="folder of vgg_mass_<channels>.weights.h5 + .json (default: shipped)"
    )
    channels: str = Field("auto", description="auto, y, y,xray or y,xray,optical")
    survey: str = Field(
        "auto", description="y survey of the networks: auto (from the y noise), act or deep"
    )
    threads: int = Field(2, ge=1, le=256, description="TensorFlow CPU threads")
    batch_size: int = Field(256, ge=1, le=65536)


def shipped_sets(weights_dir: Path) -> list[tuple[str, ...]]:
    """Channel sets with a ``.json`` + ``.weights.h5`` pair in ``weights_dir``, largest first."""
    from clusterfw.plugins.estimators.vgg_mass.train import stem

    return [
        s
        for s in CHANNEL_SETS
        if (weights_dir / f"{stem(s)}.json").is_file()
        and (weights_dir / f"{stem(s)}.weights.h5").is_file()
    ]


def read_network_config(path: Path) -> dict[str, Any]:
    """A network's ``.json`` (architecture, grid, normalisation), checked; one-line errors."""
    from clusterfw.plugins.estimators.vgg_mass import data as data_mod
    from clusterfw.plugins.estimators.vgg_mass.train import CONFIG_VERSION

    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(str(path), f"unreadable network config ({type(exc).__name__})") from None
    need = ("config_version", "channels", "npix", "rebin", "pixel_arcmin", "normalisation")
    if not isinstance(cfg, dict) or any(k not in cfg for k in need):
        raise InputError(str(path), f"network config lacks one of {', '.join(need)}")
    if cfg["config_version"] != CONFIG_VERSION:
        raise InputError(str(path), f"unsupported config_version {cfg['config_version']!r}")
    norm = cfg["normalisation"]
    want = {
        "y_scale": data_mod.Y_SCALE,
        "t_ref_s": data_mod.T_REF,
        "mstar_scale": data_mod.MSTAR_SCALE,
        "m_pivot": data_mod.M_PIVOT,
    }
    for k, v in want.items():
        if not isinstance(norm.get(k), int | float) or not math.isclose(norm[k], v):
            raise InputError(str(path), f"normalisation {k}={norm.get(k)!r}, this code uses {v:g}")
    npix, rebin = cfg["npix"], cfg["rebin"]
    if not (isinstance(npix, int) and 8 <= npix <= 1024 and isinstance(rebin, int) and rebin >= 1):
        raise InputError(str(path), f"bad npix {npix!r} or rebin {rebin!r}")
    return cfg


class VggMassEstimator(Estimator):
    """M500c from y (and X-ray, stellar-mass) cutouts with Yan et al.'s VGG; Y–M baseline."""

    name = "vgg_mass"
    version = "0.1.0"
    Options = VggMassOptions
    # every network has a y channel, from a ymap layer or from mm bands (ILC); requirements
    # cannot say "one of", so the check is made in estimate() (one line, nothing written)
    requires: ClassVar[tuple[LayerRequirement, ...]] = ()
    columns: ClassVar = (
        plugin_field("vgg_mass_m500c", pa.float64(), "solMass", "CNN M500c (median)", "phys.mass"),
        plugin_field(
            "vgg_mass_m500c_err",
            pa.float64(),
            "solMass",
            "CNN 1-sigma (M x sigma_lnM)",
            "stat.error;phys.mass",
        ),  # fmt: skip
        plugin_field("vgg_mass_channels", pa.string(), "", "Channels of the network used"),
        plugin_field(
            "vgg_mass_flag", pa.uint32(), "", "Bits: 1 no z, 2 no cutout, 4 z extrap, 8 ysz"
        ),
        plugin_field(
            "vgg_mass_m500c_ysz", pa.float64(), "solMass", "Y500-M500 inversion M500c", "phys.mass"
        ),
        plugin_field(
            "vgg_mass_m500c_ysz_err",
            pa.float64(),
            "solMass",
            "Y-M 1-sigma (scatter + noise)",
            "stat.error;phys.mass",
        ),  # fmt: skip
        plugin_field("vgg_mass_z", pa.float64(), "", "Redshift used", "src.redshift"),
        plugin_field("vgg_mass_z_source", pa.string(), "", "z, <finder>_z, catalogue or none"),
        plugin_field("vgg_mass_survey", pa.string(), "", "y survey the network was trained on"),
    )

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._networks: dict[tuple[Path, tuple[str, ...]], tuple[Any, dict[str, Any]]] = {}
        if self.options.weights is None and self.options.survey not in ("auto", *SURVEY_DIRS):
            raise PluginError(
                f"vgg_mass.survey: expected auto or one of {', '.join(SURVEY_DIRS)} "
                f"(got {self.options.survey!r})"
            )
        self._catalogue: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if self.options.redshifts is not None:  # a bad catalogue stops the run before any work
            from clusterfw.plugins.estimators.vgg_mass.redshifts import read_redshift_catalogue

            self._catalogue = read_redshift_catalogue(self.options.redshifts)

    # --- the network --------------------------------------------------------------------

    def weights_dir(self) -> Path:
        """The folder the networks are read from when no survey choice is needed."""
        if self.options.weights is not None:
            return Path(self.options.weights)
        return SURVEY_DIRS.get(self.options.survey, WEIGHTS_DIR)

    def survey_dirs(self) -> dict[str, Path]:
        """Candidate folders by survey: the user's folder, the forced survey's, or all shipped."""
        if self.options.weights is not None:
            return {"custom": Path(self.options.weights)}
        if self.options.survey != "auto":
            return {self.options.survey: SURVEY_DIRS[self.options.survey]}
        found = {k: d for k, d in SURVEY_DIRS.items() if shipped_sets(d)}
        return found or {"act": WEIGHTS_DIR}

    def choose_channels(
        self, available: tuple[str, ...], wdir: Path | None = None
    ) -> tuple[str, ...]:
        """The channel set to use: the largest shipped set the sky provides (or the option's)."""
        from clusterfw.plugins.estimators.vgg_mass.data import parse_channels

        wdir = self.weights_dir() if wdir is None else wdir
        shipped = shipped_sets(wdir)
        have = ", ".join(available) or "none"
        if self.options.channels != "auto":
            try:
                want = parse_channels(self.options.channels)
            except Exception:
                raise PluginError(
                    f"vgg_mass.channels: expected auto, y, y,xray or y,xray,optical "
                    f"(got {self.options.channels!r})"
                ) from None
            if not set(want) <= set(available):
                raise PluginError(
                    f"estimator 'vgg_mass': channels {','.join(want)} need layers the sky lacks "
                    f"(usable channels: {have})"
                )
            if want not in shipped:
                raise PluginError(f"{wdir}: no vgg_mass network for channels {','.join(want)}")
            return want
        if "y" not in available:
            raise PluginError(
                "estimator 'vgg_mass': no layer the networks can use (needs a ymap layer, or an "
                f"mm layer of at least two bands for the y ILC; usable channels: {have})"
            )
        usable = [s for s in shipped if set(s) <= set(available)]
        if not usable:
            raise PluginError(
                f"{wdir}: no vgg_mass network for channels {','.join(available)} "
                "(train one with `clusterfw train vgg_mass`, pass -o vgg_mass.weights=DIR)"
            )
        return usable[0]

    def choose_network(
        self, available: tuple[str, ...], sky: Any, ra: np.ndarray, dec: np.ndarray
    ) -> tuple[str, Path, tuple[str, ...], Any]:
        """Survey, folder and channel set of the network to use, and y cutouts already read.

        With several survey folders (``survey=auto``), the y cutouts are read on the raw grid
        of the first folder's network and their measured noise picks the folder
        (:func:`~clusterfw.plugins.estimators.vgg_mass.surveys.nearest_survey`); they are
        returned for reuse (``None`` when none were read).
        """
        from clusterfw.plugins.estimators.vgg_mass.cutouts import candidate_cutouts
        from clusterfw.plugins.estimators.vgg_mass.surveys import measured_y_noise, nearest_survey
        from clusterfw.plugins.estimators.vgg_mass.train import stem
        from clusterfw.sim import ymap

        dirs = self.survey_dirs()
        first = next(iter(dirs))
        if len(dirs) == 1:
            return first, dirs[first], self.choose_channels(available, dirs[first]), None
        chans = {k: self.choose_channels(available, d) for k, d in dirs.items()}
        # the configs only (grid, training survey): no network is built before the choice
        cfgs = {k: read_network_config(d / f"{stem(chans[k])}.json") for k, d in dirs.items()}
        depths = {
            k: ymap.get_preset(str(c.get("ymap_preset", "act"))).noise_y_arcmin
            for k, c in cfgs.items()
        }
        rebin, npix = int(cfgs[first]["rebin"]), int(cfgs[first]["npix"])
        raw_pix = float(cfgs[first]["pixel_arcmin"]) / rebin
        y_cuts = candidate_cutouts(sky, "y", ra, dec, npix * rebin, raw_pix)
        pick = nearest_survey(measured_y_noise(y_cuts.pixels[y_cuts.valid], raw_pix), depths)
        return pick, dirs[pick], chans[pick], (y_cuts, npix * rebin, raw_pix)

    def network(
        self, channels: tuple[str, ...], wdir: Path | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The Keras model and its config for ``channels`` in ``wdir`` (built and loaded once)."""
        wdir = self.weights_dir() if wdir is None else wdir
        if (wdir, channels) not in self._networks:
            from clusterfw.plugins.estimators.vgg_mass.model import build_model, load_weights
            from clusterfw.plugins.estimators.vgg_mass.train import _configure_tf, stem

            cfg = read_network_config(wdir / f"{stem(channels)}.json")
            if tuple(cfg["channels"]) != channels:
                raise InputError(
                    str(wdir / f"{stem(channels)}.json"),
                    f"channels {cfg['channels']} do not match the file name",
                )
            _configure_tf(self.options.threads, 0)
            model = build_model(cfg["npix"], channels)
            load_weights(model, str(wdir / f"{stem(channels)}.weights.h5"))
            self._networks[wdir, channels] = (model, cfg)
        return self._networks[wdir, channels]

    # --- estimate -----------------------------------------------------------------------

    def estimate(self, table: pa.Table, sky: Any) -> pa.Table:
        """Append this estimator's columns (see the module docstring)."""
        from clusterfw.plugins.estimators.vgg_mass import data as data_mod
        from clusterfw.plugins.estimators.vgg_mass.baseline import ysz_mass
        from clusterfw.plugins.estimators.vgg_mass.cutouts import (
            available_channels,
            candidate_cutouts,
        )
        from clusterfw.plugins.estimators.vgg_mass.redshifts import lookup_redshifts

        n = table.num_rows
        z, zsrc = lookup_redshifts(table, self._catalogue)
        ra = np.asarray(table.column("ra").to_numpy(zero_copy_only=False), dtype=np.float64)
        dec = np.asarray(table.column("dec").to_numpy(zero_copy_only=False), dtype=np.float64)
        survey, wdir, channels, y_read = self.choose_network(available_channels(sky), sky, ra, dec)
        model, cfg = self.network(channels, wdir)
        rebin, npix = int(cfg["rebin"]), int(cfg["npix"])
        raw_pix = float(cfg["pixel_arcmin"]) / rebin
        survey_label = str(cfg.get("ymap_preset", survey))
        cuts = {}
        for ch in channels:
            if ch == "y" and y_read is not None and y_read[1:] == (npix * rebin, raw_pix):
                cuts[ch] = y_read[0]
            else:
                cuts[ch] = candidate_cutouts(sky, ch, ra, dec, npix * rebin, raw_pix)
        valid = np.logical_and.reduce([c.valid for c in cuts.values()])
        flag = np.zeros(n, dtype=np.uint32)
        flag[~np.isfinite(z)] |= FLAG_NO_REDSHIFT
        flag[~valid] |= FLAG_NO_CUTOUT
        z_lo, z_hi = cfg.get("z_range", [0.0, math.inf])
        flag[np.isfinite(z) & ((z < z_lo - 0.02) | (z > z_hi + 0.02))] |= FLAG_Z_OUTSIDE_TRAINING
        go = np.flatnonzero(np.isfinite(z) & valid)
        m = np.full(n, np.nan)
        m_err = np.full(n, np.nan)
        if go.size:
            arrays = {"y": np.nan_to_num(cuts["y"].pixels[go])}
            if "xray" in cuts:
                arrays["xray_counts"] = np.nan_to_num(cuts["xray"].pixels[go])
                arrays["xray_exposure"] = np.nan_to_num(cuts["xray"].exposure[go])
            if "optical" in cuts:
                arrays["stellar_mass"] = np.nan_to_num(cuts["optical"].pixels[go])
            x = data_mod.stack_channels(arrays, channels, rebin)
            pred = model.predict(
                {"image": x, "z": z[go, None].astype(np.float32)},
                batch_size=self.options.batch_size,
                verbose=0,
            )
            pred = np.asarray(pred, dtype=np.float64)
            from clusterfw.plugins.estimators.vgg_mass.train import (
                apply_mu_calibration,
                sigma_scales,
            )

            t_hat = apply_mu_calibration(pred[:, 0], cfg.get("mu_calibration"))
            m[go] = data_mod.mass_from_target(t_hat)
            m_err[go] = m[go] * pred[:, 1] * sigma_scales(t_hat, cfg)
        m_y = np.full(n, np.nan)
        m_y_err = np.full(n, np.nan)
        beam = cuts["y"].beam_fwhm_arcmin
        if beam is None:
            from clusterfw.sim import ymap

            beam = ymap.get_preset(cfg.get("ymap_preset", "act")).beam_fwhm_arcmin
        noise = cuts["y"].noise_per_pixel
        for i in go:
            rms = None if noise is None or not np.isfinite(noise[i]) else float(noise[i])
            r = ysz_mass(cuts["y"].pixels[i], float(z[i]), raw_pix, float(beam), rms)
            m_y[i], m_y_err[i] = r.m500c, r.m500c_err
        flag[np.isfinite(z) & valid & ~np.isfinite(m_y)] |= FLAG_YSZ_FAILED
        label = ",".join(channels)
        if cuts["y"].source.startswith("ilc:"):
            label = label.replace("y", "y_ilc", 1)
        estimated = np.zeros(n, dtype=bool)
        estimated[go] = True
        values = [
            pa.array(np.where(np.isfinite(m), m, np.nan), pa.float64(), from_pandas=True),
            pa.array(m_err, pa.float64(), from_pandas=True),
            pa.array([label if ok else None for ok in estimated], pa.string()),
            pa.array(flag, pa.uint32()),
            pa.array(m_y, pa.float64(), from_pandas=True),
            pa.array(m_y_err, pa.float64(), from_pandas=True),
            pa.array(z, pa.float64(), from_pandas=True),
            pa.array(list(zsrc), pa.string()),
            pa.array([survey_label if ok else None for ok in estimated], pa.string()),
        ]
        for f, v in zip(self.columns, values, strict=True):
            table = table.append_column(f, v)
        return table


# --- training command ---------------------------------------------------------------------


@click.command("vgg_mass")
@click.option(
    "--data", "data", type=click.Path(file_okay=False), required=True, multiple=True,
    help="Folder of `clusterfw simulate mass-cutouts` shards (repeat for several).",
)  # fmt: skip
@click.option("--channels", default="y", show_default=True, help="y, y,xray or y,xray,optical.")
@click.option(
    "--out", "out", type=click.Path(file_okay=False), required=True,
    help="Output folder (weights, .json, metrics.csv/json, MODEL.md).",
)  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1, max=100_000), default=200, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1, max=65536), default=50, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True, max=1.0), default=1e-3,
              show_default=True, help="Adam learning rate.")  # fmt: skip
@click.option("--patience", type=click.IntRange(min=1), default=10, show_default=True,
              help="Early stopping: epochs without a better validation NLL.")  # fmt: skip
@click.option("--rebin", type=click.IntRange(min=1, max=16), default=1, show_default=True,
              help="Average rebin×rebin pixel blocks (1: the shards' 10\" pixels).")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=10), default=None, help="Use the first N samples.")
@click.option("--threads", type=click.IntRange(min=1, max=256), default=2, show_default=True)
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after the epoch that passes this wall time.")  # fmt: skip
@click.option("--no-baseline", is_flag=True, help="Skip the Y–M inversion on held-out clusters.")
@click.option("--z-bin", "z_bin", default=None,
              help="LO,HI: train on the cutouts with LO <= z < HI only.")  # fmt: skip
@click.option("--beta-nll", "beta", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="β of the β-NLL loss (0: the Gaussian NLL).")  # fmt: skip
@click.option("--median-calibration", is_flag=True,
              help="Fit an inverse median map of the output on validation.")  # fmt: skip
@click.option("--smoke", is_flag=True, help="Label the model card as a smoke run (not final).")
@click.option("--quiet", is_flag=True, help="No per-epoch progress lines.")
def train_vgg_mass(
    data: tuple[str, ...], channels: str, out: str, seed: int, epochs: int, batch_size: int,
    lr: float, patience: int, rebin: int, limit: int | None, threads: int,
    max_minutes: float | None,
    no_baseline: bool, z_bin: str | None, beta: float, median_calibration: bool, smoke: bool,
    quiet: bool,
) -> None:  # fmt: skip
    """Train the vgg_mass network on simulated mass-cutout shards."""
    import shlex
    import sys

    from clusterfw.core.atomic import check_replaceable
    from clusterfw.plugins.estimators.vgg_mass.data import parse_channels
    from clusterfw.plugins.estimators.vgg_mass.train import OUTPUT_NAMES, TrainConfig, stem, train
    from clusterfw.sim.shards.common import read_manifest

    chans = parse_channels(channels)
    zr = None
    if z_bin is not None:
        try:
            zr = tuple(float(v) for v in z_bin.split(","))
        except ValueError:
            zr = ()
        if len(zr) != 2 or not (0 <= zr[0] < zr[1]):
            raise ClusterfwError(f"--z-bin: expected LO,HI with 0 <= LO < HI (got {z_bin!r})")
    for folder in data:
        read_manifest(folder)  # one-line error before TensorFlow starts
    names = {*OUTPUT_NAMES, f"{stem(chans)}.weights.h5", f"{stem(chans)}.json"}
    check_replaceable(Path(out), lambda e: e.name in names)
    cfg = TrainConfig(
        data=tuple(Path(f) for f in data), out=Path(out), channels=chans, seed=seed, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, rebin=rebin, limit=limit,
        threads=threads, max_minutes=max_minutes if max_minutes is not None else math.inf,
        baseline=(not no_baseline) and "y" in chans, z_range=zr, beta_nll=beta,
        median_calibration=median_calibration,
        extra={"smoke": smoke, "command": shlex.join(["clusterfw", *sys.argv[1:]])},
    )  # fmt: skip
    summary = train(cfg, progress=not quiet)
    ev = summary["evaluation"]["val"]
    msg = (
        f"wrote {out}/{stem(chans)}.weights.h5; validation σ(ln M) {ev['cnn']['std']:.3f} "
        f"(median {ev['cnn']['median']:+.3f}, 68% coverage {ev['cnn']['coverage68']:.2f})"
    )
    if "ysz" in ev:
        msg += f"; Y–M inversion σ {ev['ysz']['std']:.3f} on the same clusters"
    click.echo(msg, err=True)


@hookimpl
def clusterfw_register_estimators(register: Any) -> None:
    """Register :class:`VggMassEstimator`."""
    register(VggMassEstimator)


@hookimpl(trylast=True)
def clusterfw_register_commands(cli: click.Group) -> None:
    """Add ``train vgg_mass`` (creating the ``train`` group if no other plugin did)."""
    add_train_commands(cli, train_vgg_mass)
