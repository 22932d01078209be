"""Per-thread libs2ft contexts for PyTorch devices, and torch tensors as s2ft_tensor views.

A context is used by one host thread at a time (libs2ft handles are not
locked), and autograd runs CUDA backward passes on its own worker threads,
so every (thread, device) pair gets its own :class:`s2ft.Context`. A CUDA
context is pointed at PyTorch's current stream of its device before each
use, so libs2ft's work is ordered with PyTorch's on that stream and
nothing synchronises.

Tensors are described to the library by their DLPack fields (data
pointer, dtype, device, shape, strides in elements) read from the tensor's
own metadata: the descriptor ``__dlpack__`` would produce, without the
capsule round trip on every call.
"""

import threading

import torch

from .. import _capi
from ..context import Context
from ..enums import DeviceType, DType
from ..errors import DeviceError, dtype_error

from ..tensor import TensorView

_DTYPES = {torch.float32: DType.F32, torch.float16: DType.F16, torch.bfloat16: DType.BF16}

_local = threading.local()


def supported_dtype(dtype):
    """True for the dtypes libs2ft computes in (float32, float16, bfloat16)."""
    return dtype in _DTYPES


def device_error(message):
    """A DeviceError raised by this package."""
    return DeviceError(_capi.S2FT_ERR_DEVICE, message)


def context(device):
    """This thread's libs2ft context for a torch device; on CUDA it queues on PyTorch's current stream."""
    device = torch.device(device)
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    if device.type == "cpu":
        ctx = cache.get("cpu")
        if ctx is None:
            ctx = cache["cpu"] = Context.cpu()
        return ctx
    if device.type != "cuda":
        raise device_error("libs2ft runs on CPU and CUDA tensors, not on %s" % device)
    index = torch.cuda.current_device() if device.index is None else device.index
    entry = cache.get(index)
    if entry is None:
        entry = cache[index] = [Context.cuda(index), None]
    stream = torch.cuda.current_stream(index)
    if entry[1] != stream.cuda_stream:
        entry[0].set_stream(stream)
        entry[1] = stream.cuda_stream
    return entry[0]


def view(tensor, name="tensor"):
    """A TensorView of a torch tensor: zero-copy, its DLPack fields; the view keeps the tensor alive."""
    dtype = _DTYPES.get(tensor.dtype)
    if dtype is None:
        raise dtype_error("%s is %s; libs2ft takes float32, float16 and bfloat16" % (name, tensor.dtype))
    if tensor.device.type == "cuda":
        device = (DeviceType.CUDA, tensor.device.index)
    elif tensor.device.type == "cpu":
        device = (DeviceType.CPU, 0)
    else:
        raise device_error("%s is on %s; libs2ft takes CPU and CUDA tensors" % (name, tensor.device))
    return TensorView.from_pointer(tensor.data_ptr(), dtype, tuple(tensor.shape), tensor.stride(), device,
                                   owner=tensor)
