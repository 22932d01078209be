"""One version everywhere: pyproject.toml, CMakeLists.txt's project(), the header, _capi and the loaded library."""

import os
import re
import shutil
import subprocess
import sys

import pytest

import s2ft
from conftest import REPO
from s2ft import _capi


def test_versions_agree():
    pyproject = (REPO / "bindings" / "python" / "pyproject.toml").read_text()
    package = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, flags=re.M).group(1)
    cmake = re.search(r"project\(s2ft\s+VERSION\s+([0-9.]+)", (REPO / "CMakeLists.txt").read_text()).group(1)
    header = (REPO / "include" / "s2ft" / "s2ft.h").read_text()
    parts = [re.search(r"#define S2FT_VERSION_%s (\d+)" % p, header).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    assert package == cmake == ".".join(parts) == s2ft.__version__
    assert s2ft.VERSION_NUMBER == _capi.S2FT_VERSION_NUMBER
    assert s2ft.version_string() == package and s2ft.version() == s2ft.VERSION_NUMBER


def test_library_location_is_reported():
    path = s2ft.library_path()
    assert "libs2ft" in path
    assert isinstance(s2ft.library_is_bundled(), bool)


def _import_with(library, tmp_path):
    """Runs ``import s2ft`` in a child process with S2FT_LIBRARY=library; returns (exit code, stderr)."""
    env = dict(os.environ, S2FT_LIBRARY=str(library))
    done = subprocess.run([sys.executable, "-c", "import s2ft"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    return done.returncode, done.stderr


def test_import_refuses_a_missing_or_mismatched_library(tmp_path):
    code, err = _import_with(tmp_path / "nonexistent.so", tmp_path)
    assert code != 0 and "ImportError: cannot load libs2ft" in err and "S2FT_LIBRARY" in err
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler (cc) to build a stand-in library of another version")
    for version, text in [(10000, "1.0.0"), (0, "0.0.0")]:
        src = tmp_path / ("v%d.c" % version)
        src.write_text('unsigned s2ft_version(void) { return %du; }\n'
                       'const char *s2ft_version_string(void) { return "%s"; }\n' % (version, text))
        lib = tmp_path / ("libv%d.so" % version)
        subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
        code, err = _import_with(lib, tmp_path)
        assert code != 0 and "libs2ft %s at" % text in err and "does not match these Python bindings" in err, err
