"""examples/python/finetune_torch.py runs and reports that only o_proj/down_proj lines changed."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import os
import subprocess
import sys

import s2ft
from s2ft_torch_helpers import REPO

EXAMPLE = REPO / "examples" / "python" / "finetune_torch.py"


def test_example_runs(tmp_path):
    package = os.path.dirname(os.path.dirname(os.path.abspath(s2ft.__file__)))  # this s2ft, wherever it is
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "3", "--adapter", str(tmp_path / "a.safetensors")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "step   2" in out.stdout and "selection strategy activation" in out.stdout
    assert "changed weights (lines): model.layers.0.self_attn.o_proj.weight (16)" in out.stdout
    assert (tmp_path / "a.safetensors").is_file()
