"""Errors: every failing libs2ft call raises an S2FTError carrying the status and message.

The message is ``s2ft_last_error()`` read right after the failing call, in the
same thread (the library keeps it per thread). Arguments the bindings reject
themselves before calling C raise the same classes with the status the
library would give. Each status has its own subclass, which also derives
from the matching built-in exception (ValueError, TypeError, OSError, ...)
so that ordinary ``except`` clauses work too.
"""

from . import _capi
from ._library import api as _api


def status_string(status):
    """The library's short name of a status code, e.g. ``"invalid argument"``."""
    return _api.s2ft_status_string(int(status)).decode("utf-8", "replace")


def last_error():
    """The message of the last failed libs2ft call on this thread (``""`` if none)."""
    return _api.s2ft_last_error().decode("utf-8", "replace")


def clear_error():
    """Clears this thread's last error message."""
    _api.s2ft_clear_error()


class S2FTError(Exception):
    """A failed libs2ft call: ``status`` (negative S2FT_ERR_* code), ``status_name`` and ``message``."""

    def __init__(self, status, message):
        """Makes the error of ``status`` with ``message`` (which names the argument at fault)."""
        self.status = int(status)
        self.status_name = status_string(self.status)
        self.message = message
        super().__init__("%s (%d): %s" % (self.status_name, self.status, message))

    def __reduce__(self):
        """Pickles as the class, status and message (the base class would pass only the text)."""
        return (_make_error, (self.status, self.message))


class InvalidArgumentError(S2FTError, ValueError, TypeError):
    """S2FT_ERR_INVALID_ARGUMENT: a missing argument (None), a wrong type or a bad value."""


class ShapeError(S2FTError, ValueError):
    """S2FT_ERR_SHAPE: tensor shapes do not fit together."""


class DtypeError(S2FTError, TypeError):
    """S2FT_ERR_DTYPE: an unsupported or mismatched element type."""


class DeviceError(S2FTError, ValueError):
    """S2FT_ERR_DEVICE: mixed devices, or a tensor on another device than the context."""


class OutOfMemoryError(S2FTError, MemoryError):
    """S2FT_ERR_OUT_OF_MEMORY: an allocation (host or device) failed."""


class FileIOError(S2FTError, OSError):
    """S2FT_ERR_IO: a file could not be read or written."""


class FormatError(S2FTError, ValueError):
    """S2FT_ERR_FORMAT: a malformed file, or an adapter made for another base model."""


class UnsupportedError(S2FTError, NotImplementedError):
    """S2FT_ERR_UNSUPPORTED: not available in this build or backend (e.g. CUDA)."""


class StateError(S2FTError, RuntimeError):
    """S2FT_ERR_STATE: the call is not valid in the object's state (also: a closed handle)."""


class BackendError(S2FTError, RuntimeError):
    """S2FT_ERR_BACKEND: BLAS, CUDA or cuBLAS failed."""


class InternalError(S2FTError, RuntimeError):
    """S2FT_ERR_INTERNAL: a bug in libs2ft; please report it."""


_BY_STATUS = {
    _capi.S2FT_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    _capi.S2FT_ERR_SHAPE: ShapeError,
    _capi.S2FT_ERR_DTYPE: DtypeError,
    _capi.S2FT_ERR_DEVICE: DeviceError,
    _capi.S2FT_ERR_OUT_OF_MEMORY: OutOfMemoryError,
    _capi.S2FT_ERR_IO: FileIOError,
    _capi.S2FT_ERR_FORMAT: FormatError,
    _capi.S2FT_ERR_UNSUPPORTED: UnsupportedError,
    _capi.S2FT_ERR_STATE: StateError,
    _capi.S2FT_ERR_BACKEND: BackendError,
    _capi.S2FT_ERR_INTERNAL: InternalError,
}


def _make_error(status, message):
    """The S2FTError subclass instance for ``status`` (S2FTError itself for unknown codes)."""
    return _BY_STATUS.get(int(status), S2FTError)(status, message)


def check(status):
    """Raises the error of a failed call (``status`` != 0) with this thread's last message."""
    if status != 0:
        # Read now: the next failing call on this thread replaces the message.
        raise _make_error(status, last_error())


def invalid(message):
    """An InvalidArgumentError raised by the bindings themselves."""
    return InvalidArgumentError(_capi.S2FT_ERR_INVALID_ARGUMENT, message)


def shape_error(message):
    """A ShapeError raised by the bindings themselves."""
    return ShapeError(_capi.S2FT_ERR_SHAPE, message)


def dtype_error(message):
    """A DtypeError raised by the bindings themselves."""
    return DtypeError(_capi.S2FT_ERR_DTYPE, message)


def state_error(message):
    """A StateError raised by the bindings themselves (e.g. a closed handle)."""
    return StateError(_capi.S2FT_ERR_STATE, message)
