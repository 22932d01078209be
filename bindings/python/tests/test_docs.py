"""The Python examples of the documentation run as shown: docs/using.md's "Python" script and the
first example of bindings/python/README.md."""

import os
import re
import subprocess
import sys

from conftest import REPO


def python_blocks(path, heading):
    """The ```python blocks of the section ``heading`` (a "## " line) of a Markdown file."""
    text = path.read_text()
    section = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(heading), text, flags=re.S | re.M).group(1)
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)


def run(code, cwd):
    """Runs ``code`` in a child interpreter in ``cwd``; returns its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=dict(os.environ), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_using_md_python_script(tmp_path):
    (script,) = python_blocks(REPO / "docs" / "using.md", "Python")
    out = run(script, tmp_path)
    assert out.strip() == "Python: loaded 'first' and 'second' from files, applied, switched, removed: base restored bit-exactly"


def test_readme_example(tmp_path):
    example = python_blocks(REPO / "bindings" / "python" / "README.md", "Example")[0]
    run(example + "\nassert np.allclose(y, x @ w.T, rtol=1e-5) and np.array_equal(x_saved, x[:, cols])\n", tmp_path)
