"""Simulator throughput: a 100 deg² three-band patch at 0.25', and labelled cutouts per second.

Run: ``python benchmarks/sim_speed.py [--size 10] [--cutouts 2000]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=float, default=10.0, help="patch side in degrees")
    parser.add_argument("--cutouts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from clusterfw.sim import Components, PatchConfig, simulate_patch
    from clusterfw.sim.cutouts import make_cutouts

    print(f"cpus available: {len(os.sched_getaffinity(0))}")
    # warm-up: tables, profile projection, FFT plans
    simulate_patch(PatchConfig(size_deg=0.5), 0)
    make_cutouts(10, 0)

    everything = Components(galactic_dust=True, one_over_f=True, scan_filter=True)
    for label, comps in (("default components", Components()), ("all components", everything)):
        cfg = PatchConfig(size_deg=args.size, components=comps, ellipticity=True)
        t0, c0 = time.perf_counter(), time.process_time()
        res = simulate_patch(cfg, args.seed)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        ny, nx = cfg.shape
        print(
            f"{args.size:g}x{args.size:g} deg ({args.size**2:g} deg2, {nx}x{ny} px, 3 bands), "
            f"{label}: {dt:.2f} s wall ({cpu:.2f} s CPU); {res.halos.num_rows} halos, "
            f"{res.sources.num_rows} sources"
        )

    for mode in ("balanced", "grid"):
        t0, c0 = time.perf_counter(), time.process_time()
        batch = make_cutouts(args.cutouts, args.seed, mode=mode)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"cutouts ({mode}): {args.cutouts} of 3x32x32 in {dt:.2f} s = "
            f"{args.cutouts / dt:.0f} cutouts/s wall ({args.cutouts / cpu:.0f} per CPU-second; "
            f"positive fraction {np.mean(batch.labels):.3f})"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
