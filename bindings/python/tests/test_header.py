"""s2ft/_capi.py against include/s2ft/s2ft.h: a change to the header not made in the bindings fails here.

The header is parsed (functions, structs, #define constants) and compared
with the ctypes declarations type by type; a C program compiled against the
header prints every struct's size and field offsets, which must equal
ctypes'. Like the Rust binding's staleness check, but without a generator.
"""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO
from s2ft import _capi

HEADER = REPO / "include" / "s2ft" / "s2ft.h"

_BASE_TYPES = {
    "int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "int64_t": ctypes.c_int64,
    "uint64_t": ctypes.c_uint64, "uint8_t": ctypes.c_uint8, "uint16_t": ctypes.c_uint16,
    "double": ctypes.c_double, "float": ctypes.c_float, "size_t": ctypes.c_size_t,
    "s2ft_status": ctypes.c_int32, "char": ctypes.c_char, "void": None,
}


def _source():
    """The header without comments, with continued lines joined."""
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return text.replace("\\\n", " ")


def _code():
    """The header's C declarations: preprocessor lines removed."""
    return "\n".join(line for line in _source().splitlines() if not line.lstrip().startswith("#"))


def _ctype(decl):
    """(ctypes type, name) of a C declaration such as ``const int64_t *const units[4]``."""
    decl = " ".join(decl.split())
    dims = re.findall(r"\[([^\]]*)\]", decl)
    decl = re.sub(r"\[[^\]]*\]", "", decl)
    tokens = re.findall(r"[A-Za-z_]\w*|\*", decl)
    tokens = [t for t in tokens if t != "const"]
    name = None
    if len(tokens) >= 2 and tokens[-1] != "*" and tokens[-1] not in _BASE_TYPES and not tokens[-1].startswith("s2ft_"):
        name = tokens.pop()
    elif len(tokens) >= 2 and tokens[-1] != "*" and tokens[-2] != "*" and tokens[-2] in _BASE_TYPES:
        name = tokens.pop()  # e.g. "uint32_t version" never reaches here; kept for clarity
    base, stars = tokens[0], tokens.count("*")
    return _pointer(base, stars, dims), name


def _resolve(base):
    """The ctypes type of a base type name (structs from _capi.STRUCTS)."""
    if base in _BASE_TYPES:
        return _BASE_TYPES[base]
    if base in _capi.STRUCTS:
        return _capi.STRUCTS[base]
    raise AssertionError("unknown C type %r in the header: add it to _capi.py" % base)


def _pointer(base, stars, dims, as_field=False):
    """The ctypes type of ``base`` with ``stars`` pointer levels and array ``dims``."""
    if stars == 0 and not dims:
        return _resolve(base)
    levels = stars + (0 if as_field else len(dims))  # an array parameter is a pointer
    if levels == 0:
        t = _resolve(base)
    elif base == "char":
        t = ctypes.c_char_p
    elif base == "void" or base in _capi.OPAQUE:
        t = ctypes.c_void_p
    else:
        t = ctypes.POINTER(_resolve(base))
    for _ in range(max(levels - 1, 0)):
        t = ctypes.POINTER(t)
    if as_field:
        for dim in reversed(dims):
            t = t * _eval_define(dim)
    return t


def _eval_define(expr):
    """The value of a constant expression of the header (macros resolved)."""
    return eval(re.sub(r"(\d+)u\b", r"\1", expr), {"__builtins__": {}}, defines())  # noqa: S307


def defines():
    """{name: int} of the header's object-like integer #defines."""
    values = {}
    for line in _source().splitlines():
        m = re.match(r"\s*#\s*define\s+(S2FT_\w+)(\(?)\s*(.*)$", line)
        if not m or m.group(2) or not m.group(3).strip():
            continue  # function-like (S2FT_TARGET_BIT) or empty (the include guard)
        expr = re.sub(r"(\d+)u\b", r"\1", m.group(3).strip())
        try:
            values[m.group(1)] = eval(expr, {"__builtins__": {}}, dict(values))  # noqa: S307
        except (NameError, SyntaxError):
            continue  # S2FT_API's attribute spellings
    return values


def functions():
    """{name: (restype, [argtypes])} of every S2FT_API function."""
    found = {}
    for m in re.finditer(r"S2FT_API\s+([^;()]*?)\b(s2ft_\w+)\s*\(([^;]*?)\)\s*;", _code(), flags=re.S):
        ret, name, params = m.group(1), m.group(2), m.group(3).strip()
        restype = _pointer(ret.replace("const", "").replace("*", "").strip(), ret.count("*"), [])
        args = [] if params == "void" else [_ctype(p)[0] for p in params.split(",")]
        found[name] = (restype, args)
    return found


def structs():
    """{name: [(field, ctypes type)]} of every public struct with a body."""
    found = {}
    for m in re.finditer(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", _code(), flags=re.S):
        fields = []
        for decl in (d.strip() for d in m.group(2).split(";")):
            if not decl:
                continue
            fn = re.match(r"(.*?)\(\s*\*\s*(\w+)\s*\)\s*\((.*)\)$", decl, flags=re.S)
            if fn:
                ret = _pointer(fn.group(1).strip(), 0, [])
                params = [_ctype(p)[0] for p in fn.group(3).split(",")]
                fields.append((fn.group(2), ("function", ret, params)))
                continue
            dims = re.findall(r"\[([^\]]*)\]", decl)
            tokens = re.findall(r"[A-Za-z_]\w*|\*", re.sub(r"\[[^\]]*\]", "", decl))
            tokens = [t for t in tokens if t != "const"]
            name = tokens.pop()
            fields.append((name, _pointer(tokens[0], tokens.count("*"), dims, as_field=True)))
        found[m.group(1)] = fields
    return found


def test_every_function_has_a_matching_prototype():
    header = functions()
    assert len(header) == len(re.findall(r"^S2FT_API\b", HEADER.read_text(), flags=re.M))
    missing = sorted(set(header) - set(_capi.PROTOTYPES))
    stale = sorted(set(_capi.PROTOTYPES) - set(header))
    assert not missing, "functions of s2ft.h without a prototype in _capi.PROTOTYPES: %s" % missing
    assert not stale, "prototypes in _capi.PROTOTYPES that s2ft.h no longer declares: %s" % stale
    for name, (restype, argtypes) in header.items():
        want = _capi.PROTOTYPES[name]
        assert want[0] == restype, "%s returns %s in the header, %s in _capi" % (name, restype, want[0])
        assert list(want[1]) == argtypes, "%s takes %s in the header, %s in _capi" % (name, argtypes, want[1])


def test_every_struct_has_the_same_fields():
    header = structs()
    assert sorted(header) == sorted(_capi.STRUCTS)
    for name, fields in header.items():
        mine = _capi.STRUCTS[name]._fields_
        assert [f for f, _ in fields] == [f for f, _ in mine], name
        for (field, want), (_, have) in zip(fields, mine):
            if isinstance(want, tuple):  # a function pointer
                _, ret, params = want
                assert have._restype_ == ret and list(have._argtypes_) == params, "%s.%s" % (name, field)
            else:
                assert have == want or (
                    issubclass(have, ctypes.Array) and issubclass(want, ctypes.Array)
                    and have._type_ == want._type_ and have._length_ == want._length_
                ), "%s.%s is %s in the header, %s in _capi" % (name, field, want, have)
    opaque = set(re.findall(r"typedef\s+struct\s+(\w+)\s+\1\s*;", _code()))
    assert opaque == set(_capi.OPAQUE)


def test_every_constant_has_the_same_value():
    values = defines()
    assert "S2FT_ERR_INTERNAL" in values and "S2FT_VERSION_NUMBER" in values
    for name, value in values.items():
        assert getattr(_capi, name, None) == value, "%s is %s in the header, %r in _capi" % (
            name, value, getattr(_capi, name, None))
    assert [_capi.S2FT_TARGET_BIT(t) for t in range(4)] == [1, 2, 4, 8]


def test_struct_layouts_match_a_compiled_probe(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        if os.environ.get("CI") == "true":
            pytest.fail("no C compiler for the layout probe (CI must have one)")
        pytest.skip("no C compiler (cc) on PATH: the struct layout probe needs one")
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "s2ft/s2ft.h"', "int main(void) {"]
    for name, cls in _capi.STRUCTS.items():
        lines.append('  printf("%s %%zu\\n", sizeof(%s));' % (name, name))
        for field, _ in cls._fields_:
            lines.append('  printf("%s.%s %%zu\\n", offsetof(%s, %s));' % (name, field, name, field))
    lines += ["  return 0;", "}"]
    src = tmp_path / "probe.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "probe"
    subprocess.run([cc, "-std=c99", "-I", str(REPO / "include"), str(src), "-o", str(exe)], check=True)
    out = dict(line.split() for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                       text=True).stdout.splitlines())
    for name, cls in _capi.STRUCTS.items():
        assert int(out[name]) == ctypes.sizeof(cls), "sizeof(%s)" % name
        for field, _ in cls._fields_:
            assert int(out["%s.%s" % (name, field)]) == getattr(cls, field).offset, "%s.%s" % (name, field)
