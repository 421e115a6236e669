"""Time of the ``mf`` finder on a 100 deg² three-band map against the bare FFTs it must do.

The floor is what any multi-band, multi-scale Fourier matched filter has to transform: one
forward ``rfft2`` per band and one inverse ``irfft2`` per scale (12), float32/complex64, on the
same padded shape with the same threads. ``mf`` also runs a point-source stage (one inverse FFT
per band to detect, one forward FFT per band after subtracting), shown as a second floor.
Finder and floor runs are interleaved and the minimum of ``--repeat`` runs is kept, so load from
other processes on a shared machine hits both alike. Prints both ratios and the peak memory
(tracemalloc of one ``find`` call, and the process's max RSS including the simulation).

Usage: ``python benchmarks/mf_fft_floor.py [--repeat 5]``
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
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from clusterfw.plugins.finders.mf import MatchedFilterFinder
    from clusterfw.plugins.finders.mf.grid import padded_shape
    from clusterfw.sim import PatchConfig, simulate_patch

    sim = simulate_patch(PatchConfig(size_deg=10.0, pixel_arcmin=0.5), args.seed)
    tile = sim.sky.tiles(tile_size_arcmin=1e6, margin_arcmin=0.0)[0]
    nb, ny, nx = tile.maps.shape
    shape = padded_shape(ny, nx)
    finder = MatchedFilterFinder()
    nscale = len(finder.scales)
    finder.find(tile)  # warm-up: template tables, grid cache

    def run_finder() -> float:
        finder._cache = None
        t0 = time.perf_counter()
        finder.find(tile)
        return time.perf_counter() - t0

    x = np.zeros((nb, *shape), dtype=np.float32)
    x[:, :ny, :nx] = np.nan_to_num(tile.maps)

    def run_floor(point_sources: bool = False) -> float:
        t0 = time.perf_counter()
        f = sfft.rfft2(x, axes=(-2, -1), workers=-1)
        if point_sources:
            for b in range(nb):
                sfft.irfft2(f[b], s=shape, workers=-1)
            f = sfft.rfft2(x, axes=(-2, -1), workers=-1)
        for _ in range(nscale):
            sfft.irfft2(f[0], s=shape, workers=-1)
        return time.perf_counter() - t0

    t_find, t_floor, t_floor_ps = np.inf, np.inf, np.inf
    for _ in range(args.repeat):
        t_find = min(t_find, run_finder())
        t_floor = min(t_floor, run_floor())
        t_floor_ps = min(t_floor_ps, run_floor(point_sources=True))
    tracemalloc.start()
    finder._cache = None
    finder.find(tile)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"map: {nb} bands x {ny} x {nx} (padded {shape}), {nscale} scales")
    print(f"finder find():             {t_find:8.3f} s")
    print(f"bare FFT floor ({nb}+{nscale}):      {t_floor:8.3f} s   ratio {t_find / t_floor:5.2f}")
    print(f"floor incl. PS stage ({2 * nb + nb}+{nscale}):  {t_floor_ps:8.3f} s   "
          f"ratio {t_find / t_floor_ps:5.2f}")
    print(f"peak traced memory in find: {peak / 2**20:7.1f} MiB; process max RSS {rss:7.1f} MiB")


if __name__ == "__main__":
    main()
