"""``resnet`` refuses corrupt or mismatched weights and calibration files: one line naming the
file, exit 2, before any tile is read, nothing written (real command group, in-process)."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from clusterfw.core.fits_io import write_flat_sky_fits  # noqa: E402
from clusterfw.plugins.finders.resnet.finder import shipped_weights  # noqa: E402
from tests.conftest import make_blob_sky  # noqa: E402

SHIPPED = shipped_weights() / "resnet.safetensors"
PLATT = f"resnet.calibration={shipped_weights() / 'platt.json'}"


def _cli(*args: object) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from clusterfw.core.cli import _add_optional_commands, cli

    _add_optional_commands(cli)
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    sky, _, _ = make_blob_sky(size=96)
    return write_flat_sky_fits(sky, tmp_path_factory.mktemp("maps"), prefix="m")


def _error(maps, tmp_path, *options: str) -> str:
    out = tmp_path / "o.parquet"
    opts = [x for o in options for x in ("-o", o)]
    rc, stdout, stderr = _cli("run", "-q", "--finder", "resnet", *maps, *opts, "--out", out)
    assert rc == 2, stderr
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert not out.exists()
    return lines[0]


def _metadata() -> dict[str, str]:
    with safe_open(str(SHIPPED), framework="pt") as fh:
        return dict(fh.metadata())


def test_truncated_weights(maps, tmp_path):
    bad = tmp_path / "trunc.safetensors"
    raw = SHIPPED.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    line = _error(maps, tmp_path, f"resnet.weights={bad}", PLATT)
    assert line.startswith(f"clusterfw: error: {bad}: not a readable safetensors file ("), line


def test_not_safetensors(maps, tmp_path):
    bad = tmp_path / "text.safetensors"
    bad.write_text("hello")
    line = _error(maps, tmp_path, f"resnet.weights={bad}", PLATT)
    assert line.startswith(f"clusterfw: error: {bad}: not a readable safetensors file ("), line


def test_wrong_tensor_names(maps, tmp_path):
    tensors = load_file(str(SHIPPED))
    name = sorted(tensors)[-1]
    tensors["head.extra"] = tensors.pop(name)
    bad = tmp_path / "names.safetensors"
    save_file(tensors, str(bad), metadata=_metadata())
    line = _error(maps, tmp_path, f"resnet.weights={bad}", PLATT)
    assert line == (
        f"clusterfw: error: {bad}: tensors do not match the model: 1 missing (first {name!r}), "
        "1 unexpected (first 'head.extra')"
    )


def test_wrong_tensor_shape(maps, tmp_path):
    tensors = load_file(str(SHIPPED))
    key = sorted(k for k, v in tensors.items() if v.ndim == 4 and v.shape[-1] == 3)[0]
    shape = list(tensors[key].shape)
    tensors[key] = tensors[key][:, :, :2, :2].contiguous()
    bad = tmp_path / "shape.safetensors"
    save_file(tensors, str(bad), metadata=_metadata())
    line = _error(maps, tmp_path, f"resnet.weights={bad}", PLATT)
    assert line == (
        f"clusterfw: error: {bad}: tensor {key!r} has shape {shape[:2] + [2, 2]}, the model "
        f"needs {shape}"
    )


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"config": None}, "no model config in the safetensors metadata"),
        ({"config": "{not json"}, "safetensors metadata is not valid JSON (Expecting property "
         "name enclosed in double quotes)"),
        ({"config": json.dumps({"in_channels": 3, "size": 32, "width": 100000,
                                "blocks": [3, 4, 6], "fc": 256})},
         "model config width=100000 is not an integer in 1..512"),
        ({"clusterfw": json.dumps({"scales_uk": [1.0, -2.0, 3.0]})},
         "metadata scales_uk=[1.0, -2.0, 3.0] is not 3 finite positive numbers"),
    ],
    ids=["no config", "config not JSON", "absurd width", "negative scale"],
)  # fmt: skip
def test_bad_metadata(maps, tmp_path, change, problem):
    meta = _metadata()
    for key, value in change.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    bad = tmp_path / "meta.safetensors"
    save_file(load_file(str(SHIPPED)), str(bad), metadata=meta)
    assert (
        _error(maps, tmp_path, f"resnet.weights={bad}", PLATT)
        == f"clusterfw: error: {bad}: {problem}"
    )


@pytest.mark.parametrize(
    "text, problem",
    [
        ("a = 1.3\n", "not JSON (Expecting value at line 1 column 1)"),
        ("[1.3, 0.2]", 'not a Platt calibration (expected {"method": "platt", ...})'),
        ('{"method": "isotonic", "a": 1, "b": 0}',
         'not a Platt calibration (expected {"method": "platt", ...})'),
        ('{"a": 1.3}', "Platt 'b' must be a finite number, got None"),
        ('{"a": "1.3", "b": 0.1}', "Platt 'a' must be a finite number, got '1.3'"),
        ('{"a": NaN, "b": 0.1}', "Platt 'a' must be a finite number, got nan"),
        ('{"a": -1.0, "b": 0.1}', "Platt slope 'a' must be positive, got -1.0"),
    ],
    ids=["not JSON", "list", "other method", "no b", "a text", "a NaN", "a negative"],
)  # fmt: skip
def test_bad_calibration(maps, tmp_path, text, problem):
    bad = tmp_path / "platt.json"
    bad.write_text(text)
    line = _error(maps, tmp_path, f"resnet.calibration={bad}")
    assert line == f"clusterfw: error: {bad}: {problem}"


def test_calibration_beside_weights_checked(maps, tmp_path):
    """The default calibration is platt.json beside the weights: a broken one is named."""
    weights = tmp_path / "resnet.safetensors"
    shutil.copy(SHIPPED, weights)
    (tmp_path / "platt.json").write_text("{")
    line = _error(maps, tmp_path, f"resnet.weights={weights}")
    assert line.startswith(f"clusterfw: error: {tmp_path / 'platt.json'}: not JSON ("), line
