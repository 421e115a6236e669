"""Optical detector fields: boxes hold the bright members they claim; labels; seeing, depth."""

from __future__ import annotations

import numpy as np
import pytest

from clusterfw.sim.optical.galaxies import mstar_apparent
from clusterfw.sim.shards.detection import (
    BOX_FRACTION,
    OpticalFieldsConfig,
    pack_detection_field,
    render_detection_field,
)

CFG = OpticalFieldsConfig(
    size_deg=0.1, preset="sdss", rebin=2, max_clusters=2, empty_fraction=0.0, z_max=0.4
)


def test_boxes_hold_80_percent_of_the_bright_members_and_labels_are_right():
    checked = 0
    for i in range(3):
        det = render_detection_field(CFG, 4, i)
        s = pack_detection_field(CFG, det)
        k = det.n_clusters
        assert 1 <= k <= 2 and int(s["n_boxes"]) == k
        assert np.isnan(s["boxes"][k:]).all()
        g = det.field.galaxies
        gx, gy = det.field.footprint.to_pixel(g["ra"].to_numpy(), g["dec"].to_numpy())
        for j in range(k):
            x0, y0, x1, y1 = det.boxes_native[j]
            z = det.halos["z"][j].as_py()
            sel = (
                g["is_member"].to_numpy()
                & (g["halo_id"].to_numpy() == j)
                & (g["mag_r"].to_numpy() < float(mstar_apparent(np.array(z), "r")) + 2.0)
            )
            n_bright = int(sel.sum())
            assert s["box_n_bright"][j] == n_bright
            inside = (gx[sel] >= x0) & (gx[sel] <= x1) & (gy[sel] >= y0) & (gy[sel] <= y1)
            if n_bright >= 5:
                frac = inside.mean()
                assert BOX_FRACTION <= frac < 1.0 or inside.sum() == n_bright
                # the smallest such square: shrinking it by 1 % loses the 80 %
                h = (x1 - x0) / 2 * 0.99
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                cheb = np.maximum(np.abs(gx[sel] - cx), np.abs(gy[sel] - cy))
                assert (cheb <= h).mean() < BOX_FRACTION
                checked += 1
            # centred on the truth; stored in rebinned pixel edges, clipped to the image
            assert s["box_x"][j] == pytest.approx(((x0 + x1) / 2 + 0.5) / CFG.rebin)
            ny, nx = s["images"].shape[1:]
            bx = s["boxes"][j]
            assert 0 <= bx[0] <= bx[2] <= nx and 0 <= bx[1] <= bx[3] <= ny
            assert bx[0] == pytest.approx(max(0.0, (x0 + 0.5) / CFG.rebin), abs=1e-3)
            assert 1e14 <= s["box_m500c"][j] <= 1e15 and 0.05 <= s["box_z"][j] <= 0.4
            assert s["box_richness"][j] == det.halos["richness"][j].as_py()
    assert checked >= 2


def test_images_seeing_depth_and_empty_fields():
    cfg = CFG.model_copy(update={"size_deg": 0.05, "empty_fraction": 1.0, "rebin": 3})
    det = render_detection_field(cfg, 1, 0)
    s = pack_detection_field(cfg, det)
    assert int(s["n_boxes"]) == 0 and np.isnan(s["boxes"]).all()
    n = round(0.05 * 3600 / 0.396) // 3
    assert s["images"].shape == (3, n, n) and s["images"].dtype == np.float16
    # rebinning sums flux: the stored r image = the native one summed over 3x3 blocks
    native = det.field.images["r"].astype(np.float64)[: n * 3, : n * 3]
    summed = native.reshape(n, 3, n, 3).sum(axis=(1, 3))
    assert np.allclose(s["images"][1].astype(np.float64), summed, rtol=2e-3, atol=1e-3)
    # one seeing factor and one depth offset per field, within the ranges
    base = {"g": (1.5, 22.2), "r": (1.4, 22.2), "i": (1.3, 21.3)}
    factors = s["psf_fwhm_arcsec"] / np.array([base[b][0] for b in "gri"])
    offsets = s["maglim"] - np.array([base[b][1] for b in "gri"])
    assert np.ptp(factors) < 1e-5 and 0.85 <= factors[0] <= 1.25
    assert np.ptp(offsets) < 1e-4 and -0.5 <= offsets[0] <= 0.3
    other = pack_detection_field(cfg, render_detection_field(cfg, 1, 1))
    assert other["psf_fwhm_arcsec"][0] != s["psf_fwhm_arcsec"][0]


def test_bcg_positions_are_the_rendered_fields_bcgs(tmp_path):
    from clusterfw.core.errors import InputError
    from clusterfw.sim.shards.common import write_dataset
    from clusterfw.sim.shards.detection import KIND, bcg_positions, field_samples

    cfg = CFG.model_copy(update={"size_deg": 0.06})
    out = tmp_path / "fields"
    write_dataset(out, KIND, 5, cfg.model_dump(mode="json"), 3, 2, field_samples(cfg, 5, 3),
                  progress=False)  # fmt: skip
    got = bcg_positions(out)
    assert [len(p) for p in got] == [render_detection_field(cfg, 5, i).n_clusters for i in range(3)]
    for i, pos in enumerate(got):
        det = render_detection_field(cfg, 5, i)  # painted: the same catalogue as undrawn
        g = det.field.galaxies
        bcg = g.filter(g["is_bcg"])
        for j in range(det.n_clusters):
            row = np.flatnonzero(bcg["halo_id"].to_numpy() == j)
            if not row.size:
                continue
            x, y = det.field.footprint.to_pixel(
                bcg["ra"].to_numpy()[row], bcg["dec"].to_numpy()[row]
            )
            assert pos[j] == pytest.approx([(x[0] + 0.5) / cfg.rebin, (y[0] + 0.5) / cfg.rebin])
    # a folder whose manifest no longer matches its fields is refused in one line
    import json

    m = json.loads((out / "manifest.json").read_text())
    m["seed"] = 6
    (out / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="does not match its stored centres"):
        bcg_positions(out)
