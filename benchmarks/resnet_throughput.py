"""Throughput of the ``resnet`` finder on the CPU: cutouts per second and achieved GFLOP/s.

Measures, in one run and with the same number of torch threads:

- the machine's fp32 matrix-multiply rate (``n × n`` matmuls, best of several) — the reference;
- the network alone: forward passes on batches of normalised 32 × 32 × 3 cutouts (inference
  mode, channels-last and contiguous layouts), cutouts/s and GFLOP/s (FLOPs counted from the
  convolution and linear layers);
- the whole finder: ``ResNetFinder.find`` on a simulated patch (cutting, normalising, scoring,
  Platt scaling, building the candidate table), cutouts/s;
- side by side, the wall time of the command a user runs, ``clusterfw run MAPS --finder mf``
  vs ``--finder resnet`` (and ``-o resnet.localise=false``) on a simulated ``--patch-deg`` ×
  ``--patch-deg`` three-band sky (16 deg² by default), each run ``--runs`` times alternately,
  best time kept (process start, imports, reading the maps, finding, writing included).

Usage::

    python benchmarks/resnet_throughput.py [--threads 2] [--batch 256] [--weights FILE]
        [--patch-deg 4] [--runs 3] [--skip-cli] [--json OUT]

Not run in CI. Prints a small table and (with ``--json``) writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def best_time(fn, repeat: int, min_time: float = 0.5) -> float:
    """Best wall time of ``fn()`` over ``repeat`` runs (after one warm-up)."""
    fn()
    times = []
    t_total = time.perf_counter()
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if time.perf_counter() - t_total > 30 * min_time and len(times) >= 2:
            break
    return min(times)


def matmul_gflops(n: int = 1024, repeat: int = 5) -> float:
    """fp32 GEMM rate (GFLOP/s) of ``n × n`` matrices."""
    import torch

    a = torch.randn(n, n)
    b = torch.randn(n, n)
    t = best_time(lambda: a @ b, repeat)
    return 2.0 * n**3 / t / 1e9


def cli_wall_times(patch_deg: float, runs: int, threads: int, workdir: str) -> dict[str, float]:
    """Best wall time (s) of ``clusterfw run`` with each finder on one simulated sky."""
    import subprocess
    from pathlib import Path

    sky = Path(workdir) / "sky"
    if not (sky / "truth_halos.parquet").exists():
        subprocess.run(
            ["clusterfw", "simulate", "mm", "--size", str(patch_deg), "--seed", "4242",
             "--out", str(sky)],
            check=True, capture_output=True,
        )  # fmt: skip
    maps = [str(sky / f"sim_f{b}.fits") for b in ("095", "150", "220")]
    commands = {
        "mf": ["--finder", "mf"],
        "resnet": ["--finder", "resnet", "-o", f"resnet.threads={threads}"],
        "resnet_no_localise": [
            "--finder", "resnet", "-o", f"resnet.threads={threads}", "-o", "resnet.localise=false"
        ],
    }  # fmt: skip
    best = {k: float("inf") for k in commands}
    for _ in range(runs):
        for name, extra in commands.items():
            out = Path(workdir) / f"{name}.parquet"
            t = time.perf_counter()
            subprocess.run(
                ["clusterfw", "run", "-q", *maps, *extra, "--out", str(out)],
                check=True, capture_output=True,
            )  # fmt: skip
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main() -> None:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--weights", default=None, help="weights file (default: shipped)")
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument("--patch-deg", type=float, default=4.0, help="side of the clusterfw run sky")
    p.add_argument("--runs", type=int, default=3, help="clusterfw runs per finder (best kept)")
    p.add_argument("--workdir", default=None, help="keep the sky and catalogues here")
    p.add_argument("--skip-cli", action="store_true", help="no clusterfw run timing")
    args = p.parse_args()

    import torch

    from clusterfw.plugins.finders.resnet.finder import ResNetFinder
    from clusterfw.plugins.finders.resnet.model import forward_flops

    torch.set_num_threads(args.threads)
    finder = ResNetFinder({"weights": args.weights, "device": "cpu", "batch_size": args.batch})
    net = finder._net()
    model = net.model
    flops = forward_flops(model)
    res: dict[str, object] = {
        "threads": args.threads,
        "batch": args.batch,
        "torch": torch.__version__,
        "model_config": model.config,
        "mflop_per_cutout": flops / 1e6,
    }
    res["matmul_gflops"] = matmul_gflops()

    x = torch.from_numpy(
        np.random.default_rng(0).normal(size=(args.batch, 3, 32, 32)).astype(np.float32)
    )
    with torch.inference_mode():
        for layout in ("channels_last", "contiguous"):
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            m = model.to(memory_format=fmt)
            xb = x.contiguous(memory_format=fmt)
            t = best_time(lambda m=m, xb=xb: m(xb), args.repeat)
            rate = args.batch / t
            res[f"net_{layout}_cutouts_per_s"] = rate
            res[f"net_{layout}_gflops"] = rate * flops / 1e9
        model.to(memory_format=torch.channels_last)

    from clusterfw.sim import PatchConfig, simulate_patch

    sky = simulate_patch(PatchConfig(size_deg=2.0), 7).sky
    tile = sky.tiles(tile_size_arcmin=1e4, margin_arcmin=0.0)[0]
    # cutouts/s of the whole grid pass (localise=false: one row per grid cutout) ...
    grid = ResNetFinder(
        {"weights": args.weights, "device": "cpu", "batch_size": args.batch, "localise": False}
    )
    t = best_time(lambda: grid.find(tile), max(2, args.repeat // 2))
    n = grid.find(tile).num_rows
    res["finder_cutouts"] = n
    res["finder_cutouts_per_s"] = n / t
    # ... and the time of the default find (grid pass + localisation)
    res["finder_localised_seconds"] = best_time(lambda: finder.find(tile), 2)
    res["finder_grid_seconds"] = t
    best_net = max(res["net_channels_last_cutouts_per_s"], res["net_contiguous_cutouts_per_s"])
    res["fraction_of_matmul"] = best_net * flops / 1e9 / res["matmul_gflops"]

    print(f"threads {args.threads}, batch {args.batch}, {flops / 1e6:.1f} MFLOP per cutout")
    print(f"matmul fp32           : {res['matmul_gflops']:8.1f} GFLOP/s")
    for layout in ("channels_last", "contiguous"):
        print(
            f"network, {layout:13s}: {res[f'net_{layout}_cutouts_per_s']:8.0f} cutouts/s "
            f"{res[f'net_{layout}_gflops']:6.1f} GFLOP/s"
        )
    print(f"fraction of matmul    : {res['fraction_of_matmul']:8.2f}")
    print(f"finder.find, 2° patch : {res['finder_cutouts_per_s']:8.0f} cutouts/s ({n} cutouts)")
    print(
        f"find, 2° patch        : {res['finder_grid_seconds']:8.2f} s grid only, "
        f"{res['finder_localised_seconds']:.2f} s localised"
    )
    if not args.skip_cli:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            wall = cli_wall_times(args.patch_deg, args.runs, args.threads, args.workdir or tmp)
        res["clusterfw_run_seconds"] = wall
        res["resnet_over_mf"] = wall["resnet"] / wall["mf"]
        area = args.patch_deg**2
        print(f"clusterfw run, {area:g} deg² three-band sky (best of {args.runs}):")
        for name, t in wall.items():
            print(f"  --finder {name:20s}: {t:6.2f} s ({t / wall['mf']:.2f} × mf)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
