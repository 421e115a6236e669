"""Scale benchmark (issue 17): mf throughput on Dask, 1 -> 2 worker speed-up, per-worker memory.

For each map, a child process starts the ``distributed.LocalCluster`` that ``--dask`` starts
(``DaskExecutor.local``: processes, one thread per worker, its memory and housekeeping
settings), runs ``clusterfw run --finder mf`` on it through :func:`clusterfw.core.runner.
execute_run` with ``scheduler=<that cluster>`` (the code path of ``--dask``/``--scheduler``),
and reports

- the wall time of the run (cluster start-up excluded; a warm-up run on a tiny map first, so
  the workers have imported their libraries), the area of the map (seen HEALPix pixels), and
  the throughput in deg² per second per worker (= per core: one thread per worker);
- every worker's peak RSS (``ru_maxrss`` read in the worker after the run).

Maps: two-band white-noise HEALPix maps (``tile_memory.write_healpix``: seeded noise on a
disc, UNSEEN elsewhere) of ``--areas`` deg² at ``--nside``, and optionally simulated full-sky
maps (``--full-sky DIR``: the ``*.fits`` maps of ``clusterfw simulate mm --healpix-nside N``).

The numbers depend on what else the machine is doing: this project's test host has two cores
shared with other jobs, so the speed-up is only meaningful when it is otherwise idle (the
load average is printed with the results).

Usage::

    python benchmarks/scale.py [--nside 2048] [--areas 100,1000] [--workers 1,2]
                               [--full-sky DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CHILD = textwrap.dedent(
    """
    import json, logging, os, resource, sys, time
    from pathlib import Path

    if __name__ == "__main__":
        import distributed
        from clusterfw.core.plugins import Registry
        from clusterfw.core.runner import RunRequest, execute_run

        spec = json.loads(sys.argv[1])
        from clusterfw.core.executors import DaskExecutor
        # the cluster --dask starts (one thread per worker, its malloc and housekeeping settings)
        executor = DaskExecutor.local(workers=spec["workers"])
        cluster, client = executor.cluster, executor.client
        registry = Registry()

        def run(paths, out, checkpoint=None):
            request = RunRequest(inputs=[Path(p) for p in paths], finders=["mf"], out=Path(out),
                                 tile_size_arcmin=spec["tile"], quiet=True,
                                 options={"mf": {"workers": spec["fft_threads"]}},
                                 scheduler=cluster.scheduler_address,
                                 checkpoint=Path(checkpoint) if checkpoint else None)
            t0 = time.perf_counter()
            table = execute_run(request, registry)
            return time.perf_counter() - t0, table.num_rows

        run(spec["warmup"], spec["out"] + ".warmup.parquet")
        wall, rows = run(spec["maps"], spec["out"], spec.get("checkpoint"))
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        print(json.dumps({"wall_s": wall, "rows": rows,
                          "worker_peak_mib": sorted(peaks.values()),
                          "parent_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          / 1024.0}))
        client.close()
        cluster.close()
    """
)


#: The bands of ``clusterfw simulate mm`` (SPT-3G-like): name, GHz, beam and white noise.
SIM_BANDS = (("f095", 95.0, 1.6, 2.8), ("f150", 150.0, 1.2, 2.6), ("f220", 220.0, 1.0, 6.6))


def write_noise_healpix(directory: Path, area_deg2: float, nside: int, seed: int,
                        bands=SIM_BANDS, centre=(30.0, -30.0)) -> list[Path]:  # fmt: skip
    """White-noise HEALPix maps (RING, float32) on a disc of ``area_deg2``, UNSEEN elsewhere.

    As ``tile_memory.write_healpix`` (seeded Gaussian noise of ``noise / resolution`` per
    pixel on a ``query_disc``), for any bands, and streamed: the file is written in blocks of
    rows, so a Nside-4096 map (805 MB a band) never sits in memory.
    """
    import healpy as hp
    from astropy.io import fits

    directory.mkdir(parents=True, exist_ok=True)
    npix = hp.nside2npix(nside)
    radius = math.acos(1.0 - area_deg2 / (2 * math.pi * (180 / math.pi) ** 2))
    disc = np.sort(hp.query_disc(nside, hp.ang2vec(*centre, lonlat=True), radius))
    pix_arcmin = hp.nside2resol(nside, arcmin=True)
    rng = np.random.default_rng(seed)
    per_row = 1024
    paths = []
    for name, freq, beam, noise in bands:
        disc_values = rng.normal(0.0, noise / pix_arcmin, disc.size).astype(np.float32)
        col = fits.Column(name="T", format=f"{per_row}E", array=np.zeros((1, per_row), ">f4"))
        header = fits.BinTableHDU.from_columns([col]).header
        header["NAXIS2"] = npix // per_row
        for key, value in (("PIXTYPE", "HEALPIX"), ("ORDERING", "RING"), ("NSIDE", nside),
                           ("FIRSTPIX", 0), ("LASTPIX", npix - 1), ("INDXSCHM", "IMPLICIT"),
                           ("OBJECT", "FULLSKY"), ("FREQ", freq), ("BEAMFWHM", beam),
                           ("BUNIT", "uK_CMB"), ("NOISE", noise), ("BANDNAME", name)):  # fmt: skip
            header[key] = value
        path = directory / f"noise_{name}.fits"
        tmp = path.with_suffix(".fits.part")
        with open(tmp, "wb") as fh:
            fh.write(fits.PrimaryHDU().header.tostring().encode("ascii"))
            fh.write(header.tostring().encode("ascii"))
            block = 1 << 22
            for start in range(0, npix, block):
                stop = min(npix, start + block)
                values = np.full(stop - start, hp.UNSEEN, dtype=">f4")
                lo, hi = np.searchsorted(disc, [start, stop])
                values[disc[lo:hi] - start] = disc_values[lo:hi]
                fh.write(values.tobytes())
            fh.write(b"\0" * (-(npix * 4) % 2880))
        tmp.replace(path)
        paths.append(path)
    return paths


def seen_area_deg2(paths: list[Path]) -> float:
    """Area of the pixels seen in the first map (read in blocks), deg²."""
    import healpy as hp
    from astropy.io import fits

    from clusterfw.core.layers.reading import HEALPIX_UNSEEN

    with fits.open(paths[0], memmap=True) as hdul:
        hdu = next(h for h in hdul[1:] if str(h.header.get("PIXTYPE", "")).upper() == "HEALPIX")
        column = hdu.data.field(0).reshape(-1)
        npix = column.size
        seen = 0
        for start in range(0, npix, 1 << 22):
            block = column[start : start + (1 << 22)]
            seen += int(((block > HEALPIX_UNSEEN / 2) & (block == block)).sum())
    nside = hp.npix2nside(npix)
    return seen * hp.nside2pixarea(nside, degrees=True)


def measure(maps: list[Path], warmup: list[Path], workers: int, tile: float, work: Path,
            checkpoint: Path | None = None, fft_threads: int = 1) -> dict:  # fmt: skip
    """Run the child for one map and worker count; its JSON result."""
    out = work / f"cat-{workers}-{maps[0].parent.name}.parquet"
    for stale in (out, Path(str(out) + ".warmup.parquet")):
        stale.unlink(missing_ok=True)
    spec = {"workers": workers, "tile": tile, "maps": [str(p) for p in maps],
            "warmup": [str(p) for p in warmup], "out": str(out),
            "checkpoint": str(checkpoint) if checkpoint else None,
            "fft_threads": fft_threads}  # fmt: skip
    script = work / "scale_child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(script), json.dumps(spec)], capture_output=True,
                          text=True, env=env, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def count_checkpoint(folder: Path, truth: Path | None, snr_min: float = 5.0,
                     radius_arcmin: float = 2.0, mass_min: float = 2e14) -> dict:  # fmt: skip
    """Candidates above ``snr_min`` in the tiles a (running) run has checkpointed so far.

    The area is that of the finished tiles' cores (nested HEALPix pixels of a full-sky map;
    the order from the manifest's tile size). With ``truth`` (the simulation's
    ``truth_halos.parquet``), each candidate is matched to the nearest halo of
    ``m500c >= mass_min`` within ``radius_arcmin``.
    """
    import healpy as hp
    import pyarrow as pa
    import pyarrow.parquet as pq
    from scipy.spatial import cKDTree

    from clusterfw.core.checkpoint import MANIFEST, Checkpoint
    from clusterfw.core.layers.jobs import healpix_core_order

    manifest = json.loads((folder / MANIFEST).read_text())
    ck = Checkpoint(folder, manifest["fingerprint"])
    done = ck.finished()
    tables = [ck.load(i).tables["mf"] for i in done]
    cat = pa.concat_tables(tables) if tables else None
    order = healpix_core_order(float(manifest["fingerprint"]["tile_size_arcmin"]))
    area = len(done) * hp.nside2pixarea(2**order, degrees=True)
    out: dict = {"tiles_done": len(done), "n_tiles": manifest["n_tiles"], "area_deg2": area,
                 "snr_min": snr_min}  # fmt: skip
    if cat is None:
        return out | {"above": 0}
    snr = cat.column("snr").to_numpy()
    keep = snr > snr_min
    ra, dec = cat.column("ra").to_numpy()[keep], cat.column("dec").to_numpy()[keep]
    out["above"] = int(keep.sum())
    out["per_deg2"] = out["above"] / area if area else None
    if truth is not None:
        halos = pq.read_table(truth, columns=["ra", "dec", "m500c"])
        big = halos.column("m500c").to_numpy() >= mass_min
        hv = hp.ang2vec(halos.column("ra").to_numpy()[big], halos.column("dec").to_numpy()[big],
                        lonlat=True)  # fmt: skip
        cv = hp.ang2vec(ra, dec, lonlat=True).reshape(-1, 3)
        chord = 2 * np.sin(np.radians(radius_arcmin / 60.0) / 2)
        dist, _ = cKDTree(hv).query(cv, k=1, distance_upper_bound=chord)
        matched = np.isfinite(dist)
        out.update(matched=int(matched.sum()), unmatched=int((~matched).sum()),
                   radius_arcmin=radius_arcmin, mass_min=mass_min)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print a table (or JSON) and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nside", type=int, default=2048)
    parser.add_argument("--areas", default="100,1000", help="Noise-map areas, deg² (comma list).")
    parser.add_argument("--workers", default="1,2", help="Dask worker counts (comma list).")
    parser.add_argument("--tile", type=float, default=240.0, help="Tile size, arcmin.")
    parser.add_argument("--full-sky", type=Path, default=None, help="Folder of full-sky maps.")
    parser.add_argument("--full-sky-workers", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=None, help="For the full-sky run.")
    parser.add_argument("--fft-threads", type=int, default=1,
                        help="mf's FFT threads per worker (its 'workers' option; default 1: one "
                        "thread per Dask worker, so N workers use N cores; -1: all cores in "
                        "every worker).")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: tmp).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    parser.add_argument(
        "--count-checkpoint",
        type=Path,
        default=None,
        help="Only count candidates above SNR 5 in this checkpoint's tiles.",
    )
    parser.add_argument("--truth", type=Path, default=None, help="truth_halos.parquet to match.")
    opts = parser.parse_args(argv)
    if opts.count_checkpoint is not None:
        counted = count_checkpoint(opts.count_checkpoint, opts.truth)
        print(json.dumps(counted))
        return counted
    sys.path.insert(0, str(HERE))
    from tile_memory import write_healpix

    work = opts.work or Path(tempfile.mkdtemp(prefix="cfw-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    warmup = write_healpix(work / "warmup", 20.0, opts.nside, seed=1)
    results: dict = {"nside": opts.nside, "tile_arcmin": opts.tile, "runs": [],
                     "fft_threads_per_worker": opts.fft_threads,
                     "load_before": os.getloadavg()}  # fmt: skip
    counts = [int(w) for w in opts.workers.split(",")]
    for area in [float(a) for a in opts.areas.split(",") if a]:
        maps = write_healpix(work / f"noise{int(area)}", area, opts.nside, seed=7)
        seen = seen_area_deg2(maps)
        for workers in counts:
            got = measure(maps, warmup, workers, opts.tile, work, None, opts.fft_threads)
            got.update(map=f"noise {area:g} deg²", area_deg2=seen, workers=workers,
                       deg2_per_s_per_core=seen / got["wall_s"] / workers)  # fmt: skip
            results["runs"].append(got)
            print(json.dumps(got), flush=True)
    if opts.full_sky is not None:
        maps = sorted(opts.full_sky.glob("*.fits"))
        seen = seen_area_deg2(maps)
        got = measure(maps, warmup, opts.full_sky_workers, opts.tile, work, opts.checkpoint,
                      opts.fft_threads)  # fmt: skip
        got.update(map=f"full sky {opts.full_sky}", area_deg2=seen,
                   workers=opts.full_sky_workers,
                   deg2_per_s_per_core=seen / got["wall_s"] / opts.full_sky_workers)  # fmt: skip
        results["runs"].append(got)
        print(json.dumps(got), flush=True)
    by = {(r["map"], r["workers"]): r["wall_s"] for r in results["runs"]}
    results["speedup_1_to_2"] = {
        m: by[(m, 1)] / by[(m, 2)] for m, w in by if w == 1 and (m, 2) in by
    }
    results["load_after"] = os.getloadavg()
    print(f"{'map':<28} {'workers':>7} {'deg2':>9} {'wall s':>9} {'deg2/s/core':>12} "
          f"{'worker peak MiB':>18}")  # fmt: skip
    for r in results["runs"]:
        peak = max(r["worker_peak_mib"])
        print(f"{r['map'][:28]:<28} {r['workers']:>7} {r['area_deg2']:>9.0f} {r['wall_s']:>9.1f} "
              f"{r['deg2_per_s_per_core']:>12.3f} {peak:>18.0f}")  # fmt: skip
    for m, s in results["speedup_1_to_2"].items():
        print(f"speed-up 1 -> 2 workers on {m}: {s:.2f}x")
    print(f"load average before {results['load_before']}, after {results['load_after']}")
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
