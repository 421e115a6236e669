"""Time of the ``mf`` finder on a 100 deg² three-band map against the bare FFTs it must do.

The floor (the target ``find() / floor <= 2`` is against it) is every transform the method
needs, float32/complex64, on the same padded shape with the same threads:

* one forward ``rfft2`` per band (3),
* the point-source stage: one inverse ``irfft2`` per band to detect sources and one forward
  ``rfft2`` per band after subtracting them (3 + 3),
* one inverse ``irfft2`` per scale (12),

i.e. 9 + 12 = 21 FFTs. The 3 + 12 floor of a matched filter without a point-source stage is
printed as a reference. The floor transforms discard their results; the finder keeps 12 maps
per tile, which it writes into the maps of the previous tile (``MapPool``), as in a pipeline run.

Finder and floor runs are interleaved, so load from other processes on a shared machine hits
both alike. Printed: the ratio of the minima of ``--repeat`` runs, and the median and range of
the ratios of the runs taken side by side; wall and process CPU time (the steadier figure on a
shared machine). Memory: peak traced (tracemalloc) during one ``find`` of a new finder (its
result maps freshly allocated) and of a finder that reuses them, and the process's max RSS
including the simulation.

Usage: ``python benchmarks/mf_fft_floor.py [--repeat 11] [--threads -1]``
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
import scipy.fft as sfft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=-1, help="FFT threads (-1: all cores)")
    args = ap.parse_args()
    workers = args.threads

    from clusterfw.plugins.finders.mf import MatchedFilterFinder
    from clusterfw.plugins.finders.mf.grid import padded_shape
    from clusterfw.sim import PatchConfig, simulate_patch

    sim = simulate_patch(PatchConfig(size_deg=10.0, pixel_arcmin=0.5), args.seed)
    tile = sim.sky.tiles(tile_size_arcmin=1e6, margin_arcmin=0.0)[0]
    nb, ny, nx = tile.maps.shape
    shape = padded_shape(ny, nx)
    finder = MatchedFilterFinder({"workers": workers})
    nscale = len(finder.scales)
    finder.find(tile)  # warm-up: template tables, grid cache

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def since(t0: tuple[float, float]) -> np.ndarray:
        t1 = clock()
        return np.array([t1[0] - t0[0], t1[1] - t0[1]])

    def run_finder() -> np.ndarray:
        finder._cache = None
        t0 = clock()
        finder.find(tile)
        return since(t0)

    x = np.zeros((nb, *shape), dtype=np.float32)
    x[:, :ny, :nx] = np.nan_to_num(tile.maps)

    def run_floor(point_sources: bool = False) -> np.ndarray:
        t0 = clock()
        f = sfft.rfft2(x, axes=(-2, -1), workers=workers)
        if point_sources:
            for b in range(nb):
                sfft.irfft2(f[b], s=shape, workers=workers)
            f = sfft.rfft2(x, axes=(-2, -1), workers=workers)
        for _ in range(nscale):
            sfft.irfft2(f[0], s=shape, workers=workers)
        return since(t0)

    # [wall, CPU] per run; the CPU time of this process is less sensitive to other processes
    runs = {"find": [], "ps": [], "bare": []}
    for _ in range(args.repeat):
        runs["find"].append(run_finder())
        runs["bare"].append(run_floor())
        runs["ps"].append(run_floor(point_sources=True))
    t = {k: np.array(v) for k, v in runs.items()}  # (repeat, 2)

    def traced_peak(f: MatchedFilterFinder) -> float:
        f._cache = None
        tracemalloc.start()
        f.find(tile)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return peak / 2**20

    peak_new = traced_peak(MatchedFilterFinder({"workers": workers}))
    peak_reuse = traced_peak(finder)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        f"map: {nb} bands x {ny} x {nx} (padded {shape}), {nscale} scales, threads {workers}, "
        f"{args.repeat} interleaved runs"
    )
    print(
        f"{'':30s} {'wall s':>7s} {'ratio':>6s} {'median [range]':>19s}   "
        f"{'CPU s':>7s} {'ratio':>6s} {'median [range]':>19s}"
    )
    best_find = t["find"].min(axis=0)
    for label, key in (
        ("finder find()", "find"),
        (f"method floor ({3 * nb}+{nscale}, target)", "ps"),
        (f"floor without PS ({nb}+{nscale})", "bare"),
    ):
        best = t[key].min(axis=0)
        paired = t["find"] / t[key]  # run by run, side by side
        cols = []
        for i in range(2):
            r = paired[:, i]
            cols.append(
                f"{best[i]:7.3f} {best_find[i] / best[i]:6.2f} "
                f"{np.median(r):5.2f} [{r.min():4.2f}, {r.max():4.2f}]"
            )
        print(f"{label:30s} {cols[0]}   {cols[1]}")
    print(
        f"peak traced memory in find: {peak_new:6.1f} MiB (new finder), {peak_reuse:6.1f} MiB "
        f"(maps reused); process max RSS {rss:7.1f} MiB"
    )


if __name__ == "__main__":
    main()
