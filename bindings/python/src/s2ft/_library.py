"""Finding and loading libs2ft, and checking that it is the version these bindings expect.

Search order (the first that loads wins):

1. ``$S2FT_LIBRARY``: a path to libs2ft.so (the in-tree tests set it). When it
   is set nothing else is tried.
2. The copy bundled in this package (``s2ft/libs2ft.so.<ABI major>``), put
   there by ``pip install`` in its default mode.
3. The installed library the build recorded (``S2FT_PYTHON_USE_INSTALLED``
   builds that found one with ``find_package(s2ft)``).
4. ``libs2ft.so.<ABI major>`` through the dynamic loader (LD_LIBRARY_PATH,
   ld.so.cache, the default folders), then ``ctypes.util.find_library``.

The library must have the same ABI major version as these bindings and be at
least as new (a newer minor only adds functions and struct versions);
otherwise importing s2ft raises ImportError naming the file and both versions.
"""

import ctypes
import ctypes.util
import os

from . import _capi

try:  # written by bindings/python/CMakeLists.txt into installed packages only
    from . import _build_config
except ImportError:  # a source checkout (PYTHONPATH=bindings/python/src)
    _build_config = None

#: The environment variable that names the library to load, overriding the search.
LIBRARY_ENV = "S2FT_LIBRARY"

_ABI_MAJOR = _capi.S2FT_VERSION_MAJOR
_SONAME = "libs2ft.so.%d" % _ABI_MAJOR
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """Yields (description, name or path) pairs to try, in order (find_library only if reached)."""
    override = os.environ.get(LIBRARY_ENV)
    if override:
        yield "$%s" % LIBRARY_ENV, override
        return
    bundled = os.path.join(_PACKAGE_DIR, _SONAME)
    if os.path.exists(bundled):
        yield "bundled", bundled
    recorded = getattr(_build_config, "INSTALLED_LIBRARY", "") if _build_config else ""
    if recorded:
        yield "recorded at build time", recorded
    yield "dynamic loader", _SONAME
    by_name = ctypes.util.find_library("s2ft")
    if by_name and by_name != _SONAME:
        yield "ctypes.util.find_library", by_name


def _check_version(cdll, where):
    """Raises ImportError unless the library's version is compatible with these bindings."""
    try:
        number = cdll.s2ft_version
        text = cdll.s2ft_version_string
    except AttributeError as exc:
        raise ImportError("%s is not libs2ft (no s2ft_version): %s" % (where, exc)) from None
    number.restype, number.argtypes = ctypes.c_uint32, []
    text.restype, text.argtypes = ctypes.c_char_p, []
    have = int(number())
    have_text = (text() or b"?").decode("utf-8", "replace")
    want = _capi.S2FT_VERSION_NUMBER
    want_text = "%d.%d.%d" % (_capi.S2FT_VERSION_MAJOR, _capi.S2FT_VERSION_MINOR, _capi.S2FT_VERSION_PATCH)
    if have // 10000 != want // 10000 or have < want:
        raise ImportError(
            "libs2ft %s at %s does not match these Python bindings (%s): the library must have "
            "ABI major version %d and be at least %s; install the matching libs2ft or set %s"
            % (have_text, where, want_text, _ABI_MAJOR, want_text, LIBRARY_ENV)
        )


def _loaded_path(cdll, fallback):
    """The file the dynamic loader actually mapped for ``cdll`` (dladdr), or ``fallback``."""

    class _DlInfo(ctypes.Structure):
        _fields_ = [
            ("dli_fname", ctypes.c_char_p),
            ("dli_fbase", ctypes.c_void_p),
            ("dli_sname", ctypes.c_char_p),
            ("dli_saddr", ctypes.c_void_p),
        ]

    try:
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (OSError, AttributeError):
        return fallback
    dladdr.restype = ctypes.c_int
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    info = _DlInfo()
    address = ctypes.cast(cdll.s2ft_version, ctypes.c_void_p).value
    if dladdr(address, ctypes.byref(info)) and info.dli_fname:
        return os.path.realpath(os.fsdecode(info.dli_fname))
    return fallback


def load():
    """Loads libs2ft and binds its prototypes; returns (API, path of the loaded file, how it was found)."""
    tried = []
    for how, name in _candidates():
        try:
            cdll = ctypes.CDLL(name)
        except OSError as exc:
            tried.append("%s (%s): %s" % (name, how, exc))
            continue
        path = _loaded_path(cdll, name)
        _check_version(cdll, path)
        try:
            api = _capi.API(cdll)
        except AttributeError as exc:
            raise ImportError(
                "libs2ft at %s lacks a function these bindings need: %s" % (path, exc)
            ) from None
        return api, path, how
    hint = (
        "set %s to the path of libs2ft.so, install the package with its bundled library "
        "(pip install ./bindings/python), or install libs2ft where the dynamic loader finds it"
        % LIBRARY_ENV
    )
    raise ImportError("cannot load libs2ft: tried " + "; ".join(tried) + ". " + hint)


api, path, found_by = load()
#: True when the loaded library is the copy bundled in this package.
bundled = found_by == "bundled"
