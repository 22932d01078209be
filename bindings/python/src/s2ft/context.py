"""Context: binds the library to one backend and device (s2ft_context)."""

import ctypes

from . import _capi
from ._convert import enum_arg, int32_arg, int_arg
from ._handle import Handle
from ._library import api as _api
from .enums import DeltaPath, DeviceType
from .errors import check, invalid
from .tensor import Borrowed, _device


def device_count(device_type=DeviceType.CUDA):
    """The number of devices of ``device_type`` this build can use (CUDA: 0 without backend or driver)."""
    device_type = enum_arg(device_type, DeviceType, "device_type")
    out = ctypes.c_int32()
    check(_api.s2ft_device_count(int(device_type), ctypes.byref(out)))
    return out.value


def _stream_address(stream):
    """A cudaStream_t address from None, an int, or a stream object (PyTorch's .cuda_stream, CuPy's .ptr)."""
    if stream is None:
        return 0
    for attribute in ("cuda_stream", "ptr"):
        if not isinstance(stream, int) and hasattr(stream, attribute):
            stream = getattr(stream, attribute)
            break
    return int_arg(stream, "stream", minimum=0)


class Context(Handle):
    """One backend and device; every computation takes a context.

    ``Context.cpu()`` or ``Context.cuda(device, stream)``. On CUDA all work
    is queued on the context's stream in call order and calls return without
    waiting; ``synchronize()`` waits. One context per host thread (handles
    are not locked). Objects made from a context keep it alive: closing the
    context while they are open releases it when the last of them closes.
    """

    _what = "Context"

    def __init__(self, device_type=DeviceType.CPU, device_id=0, *, num_threads=0, stream=None):
        """Creates a context on (device_type, device_id); ``num_threads`` CPU BLAS threads (0: BLAS's default)."""
        opts = _capi.s2ft_context_options()
        check(_api.s2ft_context_options_init(ctypes.byref(opts), _capi.S2FT_CONTEXT_OPTIONS_VERSION))
        opts.device_type = int(enum_arg(device_type, DeviceType, "device_type"))
        opts.device_id = int32_arg(device_id, "device_id", minimum=0)
        opts.num_threads = int32_arg(num_threads, "num_threads", minimum=0)
        raw = ctypes.c_void_p()
        check(_api.s2ft_context_create(ctypes.byref(opts), ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_context_destroy)
        if stream is not None:
            self.set_stream(stream)

    @classmethod
    def cpu(cls, num_threads=0):
        """A CPU context; ``num_threads`` BLAS threads (0: BLAS's default)."""
        return cls(DeviceType.CPU, 0, num_threads=num_threads)

    @classmethod
    def cuda(cls, device=0, stream=None):
        """A CUDA context on ``device`` queueing on ``stream`` (None: the legacy default stream).

        Raises UnsupportedError where the build or machine has no CUDA backend.
        """
        return cls(DeviceType.CUDA, device, stream=stream)

    @property
    def device(self):
        """The device the context is bound to, as Device(type, id)."""
        res = self._live()
        out = _capi.s2ft_device()
        check(_api.s2ft_context_device(res.ptr, ctypes.byref(out)))
        return _device(out.type, out.id)

    @property
    def is_cuda(self):
        """True for a CUDA context."""
        return self.device.type == DeviceType.CUDA

    @property
    def stream(self):
        """The CUDA stream's address as an int (0: the legacy default stream, and always 0 on the CPU)."""
        res = self._live()
        out = ctypes.c_void_p()
        check(_api.s2ft_context_stream(res.ptr, ctypes.byref(out)))
        return out.value or 0

    def set_stream(self, stream):
        """Queues later work on ``stream``: None/0 (legacy default), an address, or a stream object.

        Stream objects (``torch.cuda.Stream``, CuPy streams) are kept alive by
        the context. The new stream waits on the device for the old one's
        work; nothing synchronises. UnsupportedError on a CPU context.
        """
        res = self._live()
        address = _stream_address(stream)
        check(_api.s2ft_context_set_stream(res.ptr, address or None))
        res.attached["stream"] = stream

    @property
    def dlpack_stream(self):
        """What this context passes to CUDA producers' ``__dlpack__(stream=...)``: its stream, or 1 for the legacy default; None on the CPU."""
        return dlpack_stream(self._live())

    def set_workspace(self, workspace=None, nbytes=None):
        """Gives a CUDA context caller-owned device scratch: a device tensor (its bytes) or an address with ``nbytes``.

        None returns to the context's own workspace. The memory is kept
        alive by the context while set. UnsupportedError on the CPU.
        """
        res = self._live()
        if workspace is None:
            check(_api.s2ft_context_set_workspace(res.ptr, None, 0))
            res.attached.pop("workspace", None)
            return
        if isinstance(workspace, int):
            if nbytes is None:
                raise invalid("set_workspace: nbytes is needed with an address")
            address, owner = workspace, None
            size = int_arg(nbytes, "nbytes", minimum=0)
        else:
            owner = borrow(res).view(workspace, "workspace", writable=True)
            count = 1
            for extent in owner.shape:
                count *= extent
            size = count * owner.dtype.itemsize if nbytes is None else int_arg(nbytes, "nbytes", minimum=0)
            address = owner.data_ptr
        check(_api.s2ft_context_set_workspace(res.ptr, address, size))
        res.attached["workspace"] = owner

    @property
    def workspace_needed(self):
        """The most per-call scratch, in bytes, any call on this CUDA context has used (0 on the CPU)."""
        res = self._live()
        out = ctypes.c_size_t()
        check(_api.s2ft_context_workspace_needed(res.ptr, ctypes.byref(out)))
        return out.value

    def synchronize(self):
        """Waits for the work queued on a CUDA context and reports a fault in it (no-op on the CPU)."""
        res = self._live()
        check(_api.s2ft_context_synchronize(res.ptr))

    def set_delta_path(self, path):
        """Chooses forward_mixed's delta path (DeltaPath; the CPU has DENSE only)."""
        res = self._live()
        path = enum_arg(path, DeltaPath, "path")
        check(_api.s2ft_context_set_delta_path(res.ptr, int(path)))


def dlpack_stream(ctx_res):
    """The ``stream`` a context (its Resource) passes to CUDA producers: its stream or 1 (legacy default); None on the CPU."""
    device = _capi.s2ft_device()
    check(_api.s2ft_context_device(ctx_res.ptr, ctypes.byref(device)))
    if device.type != _capi.S2FT_DEVICE_CUDA:
        return None
    stream = ctypes.c_void_p()
    check(_api.s2ft_context_stream(ctx_res.ptr, ctypes.byref(stream)))
    return stream.value or 1


def borrow(ctx_res):
    """A Borrowed scope converting the tensors of one call on a context (given by its Resource)."""
    return Borrowed(dlpack_stream(ctx_res))


def context_arg(ctx, name="ctx"):
    """The live Resource of a Context argument."""
    from ._handle import live

    return live(ctx, Context, name)
