"""The dask-jobqueue recipe of docs/scale.md runs (up to ``cluster.scale``: no Slurm here)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale.md"


def test_slurm_recipe_builds_a_job_script():
    pytest.importorskip("dask_jobqueue")
    text = DOC.read_text()
    block = re.search(r"<!-- slurm-recipe -->\n```python\n(.*?)```", text, re.S)
    assert block is not None
    code = block.group(1).split("cluster.scale(")[0]
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - the documented recipe
    try:
        script = out.getvalue()
        assert "#SBATCH -p regular" in script
        assert "#SBATCH -A myproject" in script
        assert "#SBATCH --constraint=cpu" in script
        assert "--nthreads 1 " in script and "--nworkers 8 " in script  # 8 x 1 thread per job
        assert "source $HOME/venvs/clusterfw/bin/activate" in script
    finally:
        scope["cluster"].close()
