"""Argument conversion shared by the modules: enums, integers, paths, index arrays, strings."""

import ctypes
import enum
import operator
import os

from .errors import invalid


def enum_arg(value, cls, name):
    """``value`` as a member of IntEnum ``cls``: a member, its int value, or its name (any case)."""
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls[value.upper()]
        except KeyError:
            pass
    elif not isinstance(value, (bool, enum.Enum)):
        try:
            return cls(operator.index(value))
        except (TypeError, ValueError):
            pass
    choices = ", ".join(m.name for m in cls)
    raise invalid("%s is %r; expected a %s (%s)" % (name, value, cls.__name__, choices))


def int_arg(value, name, minimum=None, bits=64, unsigned=False):
    """``value`` as an int (anything with __index__, not bool) in the range of a C (u)int<bits>, at least ``minimum``.

    ctypes truncates out-of-range integers silently, so every integer bound
    for C passes through here.
    """
    if isinstance(value, bool) or value is None:
        raise invalid("%s is %r; expected an integer" % (name, value))
    try:
        value = operator.index(value)
    except TypeError:
        raise invalid("%s is a %s; expected an integer" % (name, type(value).__name__)) from None
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if minimum is not None:
        low = max(low, minimum)
    if not low <= value <= high:
        raise invalid("%s is %d; expected an integer in [%d, %d]" % (name, value, low, high))
    return value


def int32_arg(value, name, minimum=None):
    """``value`` as an int32 (e.g. a layer index)."""
    return int_arg(value, name, minimum, bits=32)


def float_arg(value, name):
    """``value`` as a float (int or float, not bool)."""
    if isinstance(value, bool) or value is None:
        raise invalid("%s is %r; expected a number" % (name, value))
    try:
        return float(value)
    except (TypeError, ValueError):
        raise invalid("%s is a %s; expected a number" % (name, type(value).__name__)) from None


def path_arg(value, name):
    """A str, bytes or os.PathLike path as file-system bytes for C."""
    if value is None:
        raise invalid("%s is None; expected a path" % name)
    try:
        return os.fsencode(value)
    except TypeError:
        raise invalid("%s is a %s; expected a path (str, bytes or os.PathLike)" % (name, type(value).__name__)) from None


def str_arg(value, name):
    """A str as UTF-8 bytes for C (embedded NULs refused)."""
    if not isinstance(value, str):
        raise invalid("%s is %r; expected a str" % (name, value))
    data = value.encode("utf-8", "surrogatepass")
    if b"\0" in data:
        raise invalid("%s contains a NUL character" % name)
    return data


def _iterable(values, name, what):
    """``values`` as a list; InvalidArgumentError when it is not iterable (or is a str)."""
    if isinstance(values, (str, bytes)):
        raise invalid("%s is a %s; expected a sequence of %s" % (name, type(values).__name__, what))
    try:
        return list(values)
    except TypeError:
        raise invalid("%s is a %s; expected a sequence of %s" % (name, type(values).__name__, what)) from None


def int64_array(values, name):
    """A ctypes int64 array of an iterable of integers (lists, tuples, NumPy arrays, ranges)."""
    if values is None:
        raise invalid("%s is None; expected a sequence of integers" % name)
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()  # NumPy/PyTorch: plain ints
    items = [int_arg(v, "%s[%d]" % (name, i)) for i, v in enumerate(_iterable(values, name, "integers"))]
    return (ctypes.c_int64 * len(items))(*items)


def double_array(values, name):
    """A ctypes double array of an iterable of numbers."""
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()
    items = [float_arg(v, "%s[%d]" % (name, i)) for i, v in enumerate(_iterable(values, name, "numbers"))]
    return (ctypes.c_double * len(items))(*items)


def decode(raw):
    """A C string (bytes or None) as str (None stays None)."""
    return None if raw is None else raw.decode("utf-8", "replace")
