"""The shipped ``frcnn`` weights: files, model card, and the network on a rendered rich cluster."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from clusterfw.plugins.finders.frcnn.finder import FrcnnFinder, shipped_weights  # noqa: E402


def test_discovery_does_not_import_torch():
    code = (
        "import sys\n"
        "from clusterfw.core.plugins import Registry\n"
        "r = Registry()\n"
        "assert 'frcnn' in r.names('finder'), r.names('finder')\n"
        "assert r.get('finder', 'frcnn').score_kind == 'probability'\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_files_and_model_card():
    w = shipped_weights()
    assert (w / "frcnn.safetensors").stat().st_size <= 25 * 2**20
    card = (w / "MODEL.md").read_text()
    for word in ("clusterfw train frcnn", "seed", "Platt", "validation", "test", "Box rule"):
        assert word in card, word
    platt = json.loads((w / "platt.json").read_text())
    assert platt["method"] == "platt" and platt["a"] > 0


def test_shipped_network_finds_a_rich_cluster_and_its_redshift():
    from clusterfw.sim.optical import OpticalFootprint, render_optical
    from clusterfw.sim.shards.common import halo_table

    rng = np.random.default_rng(7)
    z_true = 0.35
    halos = halo_table(np.array([6e14]), np.array([z_true]), np.array([60.0]),
                       np.array([-45.0]), rng)  # fmt: skip
    fp = OpticalFootprint.from_center(60.0, -45.0, 0.2, 0.526)
    field = render_optical(halos, fp, "des-coarse", 11, ("g", "r", "i"))
    img = np.stack([field.images[b] for b in "gri"]).astype(np.float32)
    finder = FrcnnFinder({"threads": 1})
    det = finder.detect(img, 0.526)
    p = finder._net().prob(det["raw"])
    assert p.size > 0
    best = int(np.argmax(p))
    b = det["boxes"][best]
    cx, cy = (b[0] + b[2]) / 2 - 0.5, (b[1] + b[3]) / 2 - 0.5
    tx, ty = fp.to_pixel(np.array([60.0]), np.array([-45.0]))
    sep_arcmin = np.hypot(cx - tx[0], cy - ty[0]) * 0.526 / 60
    assert sep_arcmin < 1.0, sep_arcmin
    assert p[best] > PROB_MIN
    from clusterfw.plugins.finders.frcnn.photoz import box_photoz, find_sources

    src = find_sources(img, 0.526, np.array([field.psf_fwhm_arcsec[k] for k in "gri"]))
    pz = box_photoz(src, tuple(b - 0.5), img.shape[1:])
    assert abs(pz.z - z_true) / (1 + z_true) < 0.03, pz


PROB_MIN = 0.5
