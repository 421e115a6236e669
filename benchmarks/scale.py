"""Scale benchmark (issue 17): mf throughput on Dask, 1 -> 2 worker speed-up, per-worker memory.

For each map, a child process starts a ``distributed.LocalCluster`` (processes, one thread per
worker), runs ``clusterfw run --finder mf`` on it through :func:`clusterfw.core.runner.
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
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

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
        cluster = distributed.LocalCluster(n_workers=spec["workers"], threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
        registry = Registry()

        def run(paths, out, checkpoint=None):
            request = RunRequest(inputs=[Path(p) for p in paths], finders=["mf"], out=Path(out),
                                 tile_size_arcmin=spec["tile"], quiet=True,
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
            checkpoint: Path | None = None) -> dict:  # fmt: skip
    """Run the child for one map and worker count; its JSON result."""
    out = work / f"cat-{workers}-{maps[0].parent.name}.parquet"
    for stale in (out, Path(str(out) + ".warmup.parquet")):
        stale.unlink(missing_ok=True)
    spec = {"workers": workers, "tile": tile, "maps": [str(p) for p in maps],
            "warmup": [str(p) for p in warmup], "out": str(out),
            "checkpoint": str(checkpoint) if checkpoint else None}  # fmt: skip
    script = work / "scale_child.py"
    script.write_text(CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(script), json.dumps(spec)], capture_output=True,
                          text=True, env=env, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"child failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: tmp).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    opts = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from tile_memory import write_healpix

    work = opts.work or Path(tempfile.mkdtemp(prefix="cfw-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    warmup = write_healpix(work / "warmup", 20.0, opts.nside, seed=1)
    results: dict = {"nside": opts.nside, "tile_arcmin": opts.tile, "runs": [],
                     "load_before": os.getloadavg()}  # fmt: skip
    counts = [int(w) for w in opts.workers.split(",")]
    for area in [float(a) for a in opts.areas.split(",") if a]:
        maps = write_healpix(work / f"noise{int(area)}", area, opts.nside, seed=7)
        seen = seen_area_deg2(maps)
        for workers in counts:
            got = measure(maps, warmup, workers, opts.tile, work)
            got.update(map=f"noise {area:g} deg²", area_deg2=seen, workers=workers,
                       deg2_per_s_per_core=seen / got["wall_s"] / workers)  # fmt: skip
            results["runs"].append(got)
            print(json.dumps(got), flush=True)
    if opts.full_sky is not None:
        maps = sorted(opts.full_sky.glob("*.fits"))
        seen = seen_area_deg2(maps)
        got = measure(maps, warmup, opts.full_sky_workers, opts.tile, work, opts.checkpoint)
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
