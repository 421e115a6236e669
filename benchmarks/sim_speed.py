"""Simulator throughput: a 100 deg² three-band patch at 0.25', and labelled cutouts per second.

Run: ``python benchmarks/sim_speed.py [--size 10] [--cutouts 2000]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def universe_speed(size: float, seed: int) -> None:
    """Seconds per deg² per layer of a universe at the default presets."""
    from clusterfw.sim.config import PatchConfig
    from clusterfw.sim.universe import (
        UniverseConfig,
        _optical_module,
        _render,
        sample_universe_halos,
        universe_streams,
    )

    cfg = UniverseConfig(patch=PatchConfig(size_deg=size))
    area = size * size
    t0 = time.perf_counter()
    halos, fp = sample_universe_halos(cfg, seed)
    print(f"universe {size:g} deg: halos + observables {time.perf_counter() - t0:.2f} s")
    from clusterfw.sim.patch import simulate_patch

    t0 = time.perf_counter()
    simulate_patch(cfg.patch, seed)
    dt = time.perf_counter() - t0
    print(f"  mm (3 bands, 0.25'): {dt / area:.2f} s/deg2")
    _, rngs = universe_streams(seed)
    layers = ["xray", "ymap"]
    try:
        _optical_module()
        layers.append("optical")
    except Exception as exc:  # noqa: BLE001 - optical renderer not installed
        print(f"  optical: skipped ({exc})")
    for layer in layers:
        t0 = time.perf_counter()
        _render(layer, halos, fp, cfg, rngs[layer])
        dt = time.perf_counter() - t0
        preset = getattr(cfg, f"{layer}_preset")
        print(f"  {layer} ({preset}): {dt / area:.2f} s/deg2 ({halos.num_rows} halos)")


def shard_speed(n: int, seed: int) -> None:
    """Samples per minute and bytes per sample of each training-shard kind at the defaults."""
    import tempfile
    from pathlib import Path

    from clusterfw.sim.shards.classifier import XrayCandidatesConfig, candidate_samples
    from clusterfw.sim.shards.common import write_dataset
    from clusterfw.sim.shards.detection import OpticalFieldsConfig, field_samples
    from clusterfw.sim.shards.mass import MassCutoutConfig, mass_samples

    kinds = (
        ("mass-cutouts", MassCutoutConfig(), mass_samples, 4 * n),
        ("optical-fields", OpticalFieldsConfig(), field_samples, n),
        ("xray-candidates", XrayCandidatesConfig(), candidate_samples, 2 * n),
    )
    for kind, cfg, make, count in kinds:
        list(make(cfg, seed + 1, 1))  # warm-up: tables
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = write_dataset(
                Path(tmp) / "s", kind, seed, cfg.model_dump(mode="json"), count, count,
                make(cfg, seed, count), progress=False,
            )  # fmt: skip
            dt = time.perf_counter() - t0
        size = sum(s["bytes"] for s in res["shards"]) / count
        print(
            f"shards {kind}: {count} samples in {dt:.1f} s = {60 * count / dt:.1f} per minute, "
            f"{size / 2**20:.2f} MiB per sample"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=float, default=10.0, help="patch side in degrees")
    parser.add_argument("--cutouts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--universe-size",
        type=float,
        default=1.0,
        help="side (deg) of the universe timed per layer (0: skip)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=0,
        help="samples of each training-shard kind to time at the defaults (0: skip)",
    )
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
    if args.universe_size > 0:
        universe_speed(args.universe_size, args.seed)
    if args.shards > 0:
        shard_speed(args.shards, args.seed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
