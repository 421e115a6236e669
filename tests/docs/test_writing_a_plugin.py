"""docs/writing-a-plugin.md: its ```python blocks run, in order, so the guide cannot drift."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "writing-a-plugin.md"
EXAMPLE_SRC = ROOT / "examples" / "clusterfw-peakfinder" / "src"


def python_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks opened by exactly ```python (```py blocks are excerpts)."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_blocks_are_found():
    blocks = python_blocks(GUIDE.read_text())
    assert len(blocks) >= 12
    assert any(b.startswith("# maxpct_combiner.py") for b in blocks)


def test_guide_python_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    for mod in [m for m in sys.modules if m.startswith("clusterfw_peakfinder")]:
        monkeypatch.delitem(sys.modules, mod)
    namespace: dict[str, object] = {"__name__": "writing_a_plugin"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, block in enumerate(python_blocks(GUIDE.read_text())):
            try:
                exec(compile(block, f"{GUIDE.name}[python block {k}]", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the message says which block broke
                pytest.fail(
                    f"python block {k} of {GUIDE.name} failed: {type(exc).__name__}: {exc}\n{block}"
                )
    out = capsys.readouterr().out
    assert "bad option for finder 'peak': peak.threshold: Input should be greater than 0" in out
    assert "{'a+b': {'threshold':" in out
    assert namespace["MaxPercentile"].name == "maxpct"
