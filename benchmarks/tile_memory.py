"""Peak memory of ``clusterfw run --finder mf`` against map size: memory follows the tile.

Writes noise-only two-band mm maps (Gaussian white noise, seeded; no simulation needed) —
flat TAN maps of about 100 and 1000 deg² and a HEALPix map whose seen region is about
1000 deg² — runs ``clusterfw run --finder mf`` on each in a child process and reports the
child's RSS high-water mark (``ru_maxrss`` from ``os.wait4``). Issue 12's target: the runs
differ by at most 10 %.

Usage::

    python benchmarks/tile_memory.py [--pixel 1.0] [--nside 1024] [--workdir DIR] [--json]
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


def write_flat(directory: Path, area_deg2: float, pixel_arcmin: float, seed: int) -> list[Path]:
    """Two-band white-noise TAN maps of ``area_deg2`` (square) at ``pixel_arcmin``."""
    from astropy.io import fits
    from astropy.wcs import WCS

    directory.mkdir(parents=True, exist_ok=True)
    n = int(round(math.sqrt(area_deg2) * 60.0 / pixel_arcmin))
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
    return paths


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


def peak_rss_mib(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """(RSS high-water mark in MiB, wall seconds, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024.0, time.perf_counter() - start, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixel", type=float, default=1.0, help="flat map pixel, arcmin")
    parser.add_argument("--nside", type=int, default=1024, help="HEALPix Nside")
    parser.add_argument("--areas", type=float, nargs="+", default=[100.0, 1000.0])
    parser.add_argument("--healpix-area", type=float, default=1000.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(argv)
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="tile_memory-"))
    cases: list[tuple[str, list[Path], float]] = []
    for area in opts.areas:
        maps = write_flat(work / f"flat{area:g}", area, opts.pixel, seed=int(area))
        cases.append((f"flat {area:g} deg2 at {opts.pixel:g}'", maps, area))
    if opts.healpix_area > 0:
        maps = write_healpix(work / "healpix", opts.healpix_area, opts.nside, seed=7)
        cases.append((f"HEALPix Nside {opts.nside}, {opts.healpix_area:g} deg2 seen", maps, 0))
    rows = []
    for label, maps, _ in cases:
        out = work / f"{maps[0].parent.name}.parquet"
        cmd = [sys.executable, "-m", "clusterfw", "run", *map(str, maps), "--finder", "mf"]
        cmd += ["--quiet", "--out", str(out)]
        rss, wall, rc = peak_rss_mib(cmd, work)
        if rc != 0:
            print(f"{label}: clusterfw run failed with exit code {rc}", file=sys.stderr)
            return 1
        size = sum(p.stat().st_size for p in maps) / 2**20
        rows.append({"case": label, "input_mib": size, "peak_rss_mib": rss, "seconds": wall})
    base = rows[0]["peak_rss_mib"]
    for row in rows:
        row["vs_first"] = row["peak_rss_mib"] / base - 1.0
    if opts.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'case':<40} {'input MiB':>10} {'peak RSS MiB':>13} {'vs first':>9} {'s':>7}")
        for r in rows:
            print(
                f"{r['case']:<40} {r['input_mib']:>10.1f} {r['peak_rss_mib']:>13.1f} "
                f"{r['vs_first']:>+9.1%} {r['seconds']:>7.1f}"
            )
    worst = max(abs(r["vs_first"]) for r in rows)
    print(f"largest difference from the first case: {worst:.1%} (target: at most 10%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
