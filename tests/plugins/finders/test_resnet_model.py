"""The DeepSZ network: Fig. 3 structure, bottlenecks equal to torchvision's, safetensors round
trip."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from clusterfw.plugins.finders.resnet.model import (  # noqa: E402
    Bottleneck,
    DeepSZResNet,
    forward_flops,
    load_weights,
    save_weights,
)


def test_structure_follows_fig3():
    m = DeepSZResNet(width=64)
    convs = [c for c in m.stem if isinstance(c, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((3, 3), (1, 1)), ((3, 3), (2, 2))]
    assert sum(isinstance(c, torch.nn.BatchNorm2d) for c in m.stem) == 2
    assert isinstance(m.stem[-1], torch.nn.MaxPool2d) and m.stem[-1].stride == 2
    assert [len(s) for s in m.stages] == [3, 4, 6]
    assert all(isinstance(b, Bottleneck) for s in m.stages for b in s)
    # (in, bottleneck, out) channels of the paper: (64,64,256), (256,128,512), (512,256,1024)
    firsts = [s[0] for s in m.stages]
    assert [(b.conv1.in_channels, b.conv2.out_channels, b.conv3.out_channels) for b in firsts] == [
        (64, 64, 256),
        (256, 128, 512),
        (512, 256, 1024),
    ]
    assert [b.conv2.stride for b in firsts] == [(1, 1), (2, 2), (2, 2)]
    linears = [layer for layer in m.head if isinstance(layer, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (1024 * 2 * 2, 256),
        (256, 256),
        (256, 1),
    ]
    # ~9.7 M parameters and ~154 MFLOP per 32x32x3 cutout at the paper's width
    assert 9.5e6 < sum(p.numel() for p in m.parameters()) < 9.9e6
    assert forward_flops(m) == pytest.approx(1.536e8, rel=0.01)


@pytest.mark.parametrize("stride", [1, 2])
def test_bottleneck_is_torchvisions(stride):
    from torchvision.models.resnet import Bottleneck as TvBottleneck

    def block(cls):
        down = torch.nn.Sequential(
            torch.nn.Conv2d(16, 32, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(32)
        )
        return cls(16, 8, stride, down)

    torch.manual_seed(0)
    ours, theirs = block(Bottleneck), block(TvBottleneck)
    for m in ours.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.running_var, 0.5, 2.0)
    state = ours.state_dict()
    assert list(state) == list(theirs.state_dict())
    theirs.load_state_dict(state)
    x = torch.randn(4, 16, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))


def test_inference_does_not_import_torchvision():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from clusterfw.plugins.finders.resnet.finder import ResNetFinder\n"
        "ResNetFinder()._net()\n"
        "print('torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_forward_shape_and_width_scaling():
    m = DeepSZResNet(width=8).eval()
    with torch.inference_mode():
        out = m(torch.randn(5, 3, 32, 32))
    assert out.shape == (5,)
    assert forward_flops(DeepSZResNet(width=32)) < forward_flops(DeepSZResNet(width=64)) / 3.5


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    m = DeepSZResNet(width=8)
    # give batch norm non-trivial statistics and residual branches non-zero weights
    m.train()
    for b in m.modules():
        if isinstance(b, Bottleneck):
            torch.nn.init.normal_(b.bn3.weight, 0.5, 0.1)
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 3, 32, 32))
    m.eval()
    path = tmp_path / "w.safetensors"
    save_weights(m, str(path), {"scales_uk": [1.0, 2.0, 3.0]})
    raw = path.read_bytes()
    assert b"pickle" not in raw[:4096] and raw[8:9] == b"{"  # safetensors: u64 size + JSON header
    m2, meta = load_weights(str(path))
    assert meta["scales_uk"] == [1.0, 2.0, 3.0]
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        a, b = m(x), m2(x)
    assert torch.allclose(a, b, atol=2e-2 * float(a.abs().max()) + 1e-3)
