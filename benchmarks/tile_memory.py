"""Peak memory of ``clusterfw run --finder mf`` against map size: memory follows the tile.

Writes noise-only two-band mm maps (Gaussian white noise, seeded; no simulation needed) —
flat TAN maps of about 100 and 1000 deg² and a HEALPix map whose seen region is about
1000 deg² — runs ``clusterfw run --finder mf`` on each in a child process and reports the
child's RSS high-water mark (``ru_maxrss`` from ``os.wait4``). Issue 12's target: the runs
differ by at most 10 %. With ``--whole-map`` each map is also run the pre-layer way for
contrast: read whole into a ``Sky``/``HealpixSky`` (``fits_io.read_*``) and passed to
``run_pipeline`` in a child that loads the same plugins.

Usage::

    python benchmarks/tile_memory.py [--pixel 0.5] [--nside 1024] [--whole-map] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = (("f095", 95.0, 2.2), ("f150", 150.0, 1.4))


def write_flat(
    directory: Path, area_deg2: float, pixel_arcmin: float, tile_arcmin: float, seed: int
) -> tuple[list[Path], float]:
    """Two-band white-noise CAR maps of about ``area_deg2`` (square) at ``pixel_arcmin``.

    The side is a whole number of tile cores, so every map is cut into cores of the same
    size (what the memory of a tile job follows); returns the paths and the true area.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    directory.mkdir(parents=True, exist_ok=True)
    tile_px = int(round(tile_arcmin / pixel_arcmin))
    n = max(1, math.ceil(math.sqrt(area_deg2) * 60.0 / tile_arcmin - 1e-9)) * tile_px
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---CAR", "DEC--CAR"]
    w.wcs.crval = [0.0, 0.0]
    w.wcs.crpix = [(n + 1) / 2.0, (n + 1) / 2.0]
    w.wcs.cdelt = [-pixel_arcmin / 60.0, pixel_arcmin / 60.0]
    rng = np.random.default_rng(seed)
    paths = []
    for name, freq, beam in BANDS:
        header = w.to_header()
        header.update(FREQ=freq, BEAMFWHM=beam, BUNIT="uK_CMB", NOISE=20.0, BANDNAME=name)
        path = directory / f"noise_{name}.fits"
        hdu = fits.PrimaryHDU(np.zeros((n, n), np.float32), header)
        hdu.writeto(path, overwrite=True)
        with fits.open(path, mode="update", memmap=True) as hdul:  # fill in row blocks
            data = hdul[0].data
            for y0 in range(0, n, 512):
                rows = min(512, n - y0)
                data[y0 : y0 + rows] = rng.normal(0.0, 20.0 / pixel_arcmin, (rows, n))
        paths.append(path)
    return paths, (n * pixel_arcmin / 60.0) ** 2


def write_healpix(directory: Path, area_deg2: float, nside: int, seed: int) -> list[Path]:
    """Two-band HEALPix maps (RING), white noise on a disc of ``area_deg2``, UNSEEN elsewhere."""
    import healpy as hp
    from astropy.io import fits

    directory.mkdir(parents=True, exist_ok=True)
    radius = math.acos(1.0 - area_deg2 / (2 * math.pi * (180 / math.pi) ** 2))
    disc = hp.query_disc(nside, hp.ang2vec(30.0, -30.0, lonlat=True), radius)
    pix_arcmin = hp.nside2resol(nside, arcmin=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name, freq, beam in BANDS:
        values = np.full(hp.nside2npix(nside), hp.UNSEEN, dtype=np.float32)
        values[disc] = rng.normal(0.0, 20.0 / pix_arcmin, disc.size)
        path = directory / f"hpx_{name}.fits"
        hp.write_map(
            path,
            values,
            overwrite=True,
            dtype=np.float32,
            extra_header=[
                ("FREQ", freq),
                ("BEAMFWHM", beam),
                ("BUNIT", "uK_CMB"),
                ("NOISE", 20.0),
                ("BANDNAME", name),
            ],
        )
        del values
        paths.append(path)
    fits.getheader(paths[0], 1)  # readable
    return paths


WHOLE_MAP = """
import sys
from pathlib import Path
from clusterfw.core.fits_io import is_healpix_fits, read_flat_fits, read_healpix_fits
from clusterfw.core.pipeline import run_pipeline
from clusterfw.core.plugins import Registry
Registry()  # load the same plugins as the CLI
tile = float(sys.argv[1])
paths = [Path(p) for p in sys.argv[2:]]
read = read_healpix_fits if is_healpix_fits(paths[0]) else read_flat_fits
finder = Registry().get("finder", "mf")()
run_pipeline(read(paths), [finder], tile_size_arcmin=tile)
"""


def peak_rss_mib(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(RSS high-water mark in MiB, wall seconds, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024.0, time.perf_counter() - start, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixel", type=float, default=0.5, help="flat map pixel, arcmin")
    parser.add_argument("--nside", type=int, default=1024, help="HEALPix Nside")
    parser.add_argument("--areas", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--tile-size", type=float, default=200.0, help="tile core, arcmin")
    parser.add_argument("--healpix-area", type=float, default=1000.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--whole-map", action="store_true", help="also run maps held whole")
    opts = parser.parse_args(argv)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="tile_memory-"))
    cases: list[tuple[str, list[Path], float]] = []
    for area in opts.areas:
        maps, true_area = write_flat(
            work / f"flat{area:g}", area, opts.pixel, opts.tile_size, seed=int(area)
        )
        cases.append((f"flat {true_area:.0f} deg2 at {opts.pixel:g}'", maps, true_area))
    if opts.healpix_area > 0:
        maps = write_healpix(work / "healpix", opts.healpix_area, opts.nside, seed=7)
        cases.append((f"HEALPix Nside {opts.nside}, {opts.healpix_area:g} deg2 seen", maps, 0))
    rows = []
    for label, maps, _ in cases:
        out = work / f"{maps[0].parent.name}.parquet"
        cmd = [sys.executable, "-m", "clusterfw", "run", *map(str, maps), "--finder", "mf"]
        cmd += ["--tile-size", str(opts.tile_size), "--quiet", "--out", str(out)]
        runs = [("clusterfw run (tile jobs)", cmd)]
        if opts.whole_map:
            whole = [sys.executable, "-c", WHOLE_MAP, str(opts.tile_size), *map(str, maps)]
            runs.append(("whole map in memory", whole))
        for how, args in runs:
            rss, wall, rc = peak_rss_mib(args, work)
            if rc != 0:
                print(f"{label} ({how}): failed with exit code {rc}", file=sys.stderr)
                return 1
            size = sum(p.stat().st_size for p in maps) / 2**20
            rows.append(
                {"case": label, "how": how, "input_mib": size, "peak_rss_mib": rss, "seconds": wall}
            )
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        row["vs_first"] = row["peak_rss_mib"] / base - 1.0
    if opts.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{'case':<38} {'how':<26} {'input MiB':>9} {'peak RSS MiB':>12} {'vs first':>9} "
            f"{'s':>6}"
        )
        for r in rows:
            print(
                f"{r['case']:<38} {r['how']:<26} {r['input_mib']:>9.1f} "
                f"{r['peak_rss_mib']:>12.1f} {r['vs_first']:>+9.1%} {r['seconds']:>6.1f}"
            )
    lazy = [r for r in rows if r["how"].startswith("clusterfw")]
    worst = max(abs(r["vs_first"]) for r in lazy)
    print(f"largest difference from the first case: {worst:.1%} (target: at most 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
