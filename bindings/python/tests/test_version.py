"""One version everywhere: pyproject.toml, CMakeLists.txt's project(), the header, _capi and the loaded library."""

import re

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
