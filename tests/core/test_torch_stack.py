"""The torch/torchvision pair the project installs must work together (CPU).

PyPI's torchvision wheels fail with a CPU-only "+cpu" torch build ("operator torchvision::nms
does not exist"); this test runs a compiled torchvision operator so a broken pair fails CI.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def test_torchvision_nms_runs():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = torchvision.ops.nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_torchvision_roi_align_runs():
    # f(x, y) = x + 4 y is linear, so bilinear sampling is exact: each bin gives f at its centre
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0]])
    out = torchvision.ops.roi_align(features, rois, output_size=(2, 2), aligned=False)
    assert out[0, 0].flatten().tolist() == pytest.approx([2.5, 3.5, 6.5, 7.5])
