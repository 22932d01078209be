"""The PyTorch example of bindings/python/README.md runs as shown."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import os
import re
import subprocess
import sys

import s2ft
from s2ft_torch_helpers import REPO


def test_readme_pytorch_example(tmp_path):
    text = (REPO / "bindings" / "python" / "README.md").read_text()
    section = re.search(r"^## PyTorch \(s2ft.torch\)\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M).group(1)
    (code,) = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    package = os.path.dirname(os.path.dirname(os.path.abspath(s2ft.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "adapter.safetensors").is_file()
