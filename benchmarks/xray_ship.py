"""Merge ``clusterfw train xray --modes M`` runs (one per network, trained in parallel) into
the shipped weights folder with one model card.

Usage::

    python benchmarks/xray_ship.py RUN_xray RUN_optical RUN_both \
        --out clusterfw/plugins/finders/xray/weights

Each run folder holds ``summary.json``, ``xray_<mode>.safetensors`` and ``platt_<mode>.json``;
the exact commands are read back from each run's ``MODEL.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def command_of(run: Path) -> str:
    """The ``clusterfw train xray ...`` line of a run's model card."""
    for line in (run / "MODEL.md").read_text().splitlines():
        if line.startswith("clusterfw train xray"):
            return line
    raise SystemExit(f"{run}/MODEL.md: no command line")


def main(argv: list[str] | None = None) -> dict:
    """Copy the weights and write the merged ``MODEL.md`` and ``summary.json``."""
    from clusterfw.plugins.finders.xray.card import write_model_card

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    merged: dict = {}
    commands = []
    for run in a.runs:
        s = json.loads((run / "summary.json").read_text())
        commands.append(command_of(run))
        if not merged:
            merged = {**s, "modes": {}}
            merged["seconds"] = dict(s["seconds"])
        else:
            for k in ("data", "total"):
                merged["seconds"][k] = max(merged["seconds"][k], s["seconds"][k])
            if s["optical_scales"] != merged["optical_scales"] or s["data"] != merged["data"]:
                raise SystemExit(f"{run}: trained on other data than {a.runs[0]}")
        for mode, m in s["modes"].items():
            merged["modes"][mode] = m
            for name in (f"xray_{mode}.safetensors", f"platt_{mode}.json"):
                shutil.copyfile(run / name, a.out / name)
    merged["config"]["modes"] = list(merged["modes"])
    (a.out / "summary.json").write_text(json.dumps(merged, indent=1))
    write_model_card(merged, a.out / "MODEL.md", "\n".join(commands))
    return merged


if __name__ == "__main__":
    main()
