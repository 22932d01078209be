"""Tensors: any array with ``__dlpack__`` (or NumPy's ``__array_interface__``) as an s2ft_tensor, zero-copy.

``as_tensor(obj)`` reads the producer's DLPack tensor (NumPy >= 1.22,
PyTorch, JAX, CuPy, ...) into a :class:`TensorView`: the library's
descriptor over the producer's memory, with shape and strides in elements.
The view keeps the producer alive and returns its DLPack tensor (calls the
deleter) when released: ``release()``, ``with``, or garbage collection.
Functions of this package accept tensors directly and release the views
they make when they return, except where the library keeps the memory
(Optimizer.add_param, Model), whose objects hold the views until closed.

Element types: float32, float16 and bfloat16 only; anything else raises
DtypeError before reaching C. At most S2FT_MAX_DIMS (4) dimensions.

NumPy arrays that NumPy will not export through DLPack (read-only arrays,
NumPy < 1.22) are read through ``__array_interface__`` instead; so are
ml_dtypes' bfloat16 arrays. No other fallback exists: lists and scalars are
refused.
"""

import collections
import ctypes

from . import _capi, _dlpack
from ._convert import enum_arg, int_arg
from .enums import DeviceType, DType
from .errors import InvalidArgumentError, dtype_error, invalid, shape_error, state_error

#: A device as (type, id); type is a DeviceType where the value is one.
Device = collections.namedtuple("Device", ["type", "id"])

# (DLPack code, bits) -> DType, and names for the refusal message.
_DTYPES = {
    (_capi.S2FT_DLPACK_FLOAT, 32): DType.F32,
    (_capi.S2FT_DLPACK_FLOAT, 16): DType.F16,
    (_capi.S2FT_DLPACK_BFLOAT, 16): DType.BF16,
}
_DTYPE_CODES = {v: k for k, v in _DTYPES.items()}
_CODE_NAMES = {0: "int", 1: "uint", 2: "float", 3: "opaque", 4: "bfloat", 5: "complex", 6: "bool"}
_SUPPORTED = "libs2ft takes float32, float16 and bfloat16"
_NUMPY_TYPESTR = {DType.F32: "<f4", DType.F16: "<f2", DType.BF16: "<u2"}


def _device(device_type, device_id):
    """A Device tuple, with a DeviceType where the value is one."""
    try:
        device_type = DeviceType(device_type)
    except ValueError:
        pass
    return Device(device_type, int(device_id))


def _dtype_name(code, bits, lanes):
    """A readable name of a DLPack dtype, e.g. ``float64`` or ``int8x4``."""
    name = "%s%d" % (_CODE_NAMES.get(code, "code%d." % code), bits)
    return name if lanes == 1 else "%sx%d" % (name, lanes)


class TensorView:
    """An s2ft_tensor descriptor over another object's memory (zero-copy), made by :func:`as_tensor`.

    ``desc`` is the ctypes s2ft_tensor; ``readonly`` is True when the
    producer said the memory must not be written. The view keeps its
    producer alive until released.
    """

    __slots__ = ("desc", "readonly", "_owner", "_managed", "__weakref__")

    def __init__(self, desc, owner=None, managed=None, readonly=False):
        """Wraps a filled s2ft_tensor ``desc`` kept valid by ``owner`` (and a DLPack ``managed`` tensor)."""
        self.desc = desc
        self.readonly = bool(readonly)
        self._owner = owner
        self._managed = managed

    @classmethod
    def from_pointer(cls, data, dtype, shape, strides=None, device=(DeviceType.CPU, 0), byte_offset=0,
                     owner=None, readonly=False):
        """A view of raw memory at address ``data`` (int); ``owner`` is kept alive with the view.

        ``strides`` are in elements (None: compact row-major). For callers
        that know their tensors' layout (e.g. a framework's fast path);
        nothing checks that the memory exists.
        """
        dtype = enum_arg(dtype, DType, "dtype")
        device = (enum_arg(device[0], DeviceType, "device type"), int_arg(device[1], "device id", bits=32))
        data = int_arg(data or 0, "data", unsigned=True)
        return cls(_descriptor(data, dtype, shape, strides, device, byte_offset, "tensor"), owner, None, readonly)

    @property
    def released(self):
        """True once release() has run (the view must not be used any more)."""
        return self.desc is None

    def _live_desc(self):
        """The descriptor; raises StateError after release()."""
        desc = self.desc
        if desc is None:
            raise state_error("the TensorView was released")
        return desc

    @property
    def dtype(self):
        """The element type (DType)."""
        d = self._live_desc().dtype
        return _DTYPES[(d.code, d.bits)]

    @property
    def device(self):
        """The device as Device(type, id)."""
        d = self._live_desc().device
        return _device(d.type, d.id)

    @property
    def ndim(self):
        """The number of dimensions."""
        return int(self._live_desc().ndim)

    @property
    def shape(self):
        """The extents, as a tuple."""
        desc = self._live_desc()
        return tuple(desc.shape[i] for i in range(desc.ndim))

    @property
    def strides(self):
        """The strides in elements, as a tuple."""
        desc = self._live_desc()
        return tuple(desc.strides[i] for i in range(desc.ndim))

    @property
    def data_ptr(self):
        """The address of the first element (data + byte_offset)."""
        desc = self._live_desc()
        return (desc.data or 0) + desc.byte_offset

    def numpy(self):
        """A NumPy array over the same memory (CPU views only); bfloat16 comes as uint16 bit patterns.

        The array keeps this view (and so the producer) alive. Needs NumPy.
        """
        import numpy  # only this method needs NumPy

        desc = self._live_desc()
        if desc.device.type != _capi.S2FT_DEVICE_CPU:
            raise invalid("TensorView.numpy(): the tensor is on %s, not the CPU" % (self.device,))
        dtype = self.dtype
        size = dtype.itemsize
        holder = _ArrayInterface(
            self.data_ptr, self.shape, tuple(s * size for s in self.strides), _NUMPY_TYPESTR[dtype],
            self.readonly, self,
        )
        return numpy.asarray(holder)

    def __reduce_ex__(self, protocol):
        """Refuses pickling and deep copies (a view borrows memory; copy the data instead)."""
        raise TypeError("a TensorView cannot be pickled or deep-copied; copy its data (e.g. view.numpy().copy())")

    def __dlpack_device__(self):
        """(device type, id) as DLPack's ``__dlpack_device__``."""
        d = self._live_desc().device
        return (int(d.type), int(d.id))

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Exports the memory to another framework (e.g. ``torch.from_dlpack(view)``), zero-copy.

        For views of memory this package owns or borrows without DLPack:
        checkpoint tensors, Model.layer() weights, from_pointer() and NumPy
        array-interface views (a view of a DLPack producer refuses: export
        that producer instead). The consumer's tensor keeps the memory's
        owner alive (a checkpoint stays mapped). Nothing is synchronised:
        ``stream`` is accepted and ignored.
        """
        desc = self._live_desc()
        if self._managed is not None:
            raise BufferError("this TensorView borrows a DLPack tensor; export its producer instead")
        if copy:
            raise BufferError("a TensorView cannot be copied by __dlpack__ (copy=True)")
        if dl_device is not None and tuple(int(v) for v in dl_device) != self.__dlpack_device__():
            raise BufferError("the tensor is on %s, not on device %s" % (self.device, tuple(dl_device)))
        if self.readonly and (max_version is None or tuple(max_version)[0] < 1):
            raise BufferError("a read-only tensor needs a DLPack 1.x consumer (max_version) to carry its flag")
        return _dlpack.produce(desc, self._owner, self.readonly, max_version)

    def release(self):
        """Returns the producer's memory (DLPack deleter) and drops the producer; idempotent."""
        managed, self._managed = self._managed, None
        self.desc = None
        self._owner = None
        if managed is not None:
            managed.release()

    def __enter__(self):
        """Returns the view."""
        return self

    def __exit__(self, *exc):
        """Releases the view."""
        self.release()

    def __repr__(self):
        """A short description: dtype, shape, strides, device."""
        if self.desc is None:
            return "<TensorView released>"
        return "<TensorView %s shape=%s strides=%s %s%s>" % (
            self.dtype.name.lower(), self.shape, self.strides, self.device,
            " read-only" if self.readonly else "")


class _ArrayInterface:
    """An ``__array_interface__`` over raw memory that keeps ``keep`` alive (numpy.asarray's base)."""

    __slots__ = ("__array_interface__", "_keep")

    def __init__(self, address, shape, byte_strides, typestr, readonly, keep):
        """Describes the memory at ``address``; ``keep`` lives as long as arrays made from this."""
        self.__array_interface__ = {
            "version": 3,
            "shape": tuple(shape),
            "strides": tuple(byte_strides),
            "typestr": typestr,
            "data": (address, bool(readonly)),
        }
        self._keep = keep


def _descriptor(data, dtype, shape, strides, device, byte_offset, name):
    """A filled s2ft_tensor; checks the rank and extents."""
    shape = tuple(int_arg(n, "%s shape[%d]" % (name, i)) for i, n in enumerate(shape))
    ndim = len(shape)
    if ndim > _capi.S2FT_MAX_DIMS:
        raise shape_error("%s has %d dimensions; libs2ft takes at most %d" % (name, ndim, _capi.S2FT_MAX_DIMS))
    if strides is None:
        strides = _compact_strides(shape)
    strides = tuple(int_arg(v, "%s strides[%d]" % (name, i)) for i, v in enumerate(strides))
    if len(strides) != ndim:
        raise shape_error("%s has %d strides for %d dimensions" % (name, len(strides), ndim))
    desc = _capi.s2ft_tensor()
    desc.data = data or None
    desc.device.type, desc.device.id = int(device[0]), int(device[1])
    desc.ndim = ndim
    desc.dtype.code, desc.dtype.bits = _DTYPE_CODES[dtype]
    desc.dtype.lanes = 1
    for i in range(ndim):
        desc.shape[i] = shape[i]
        desc.strides[i] = strides[i]
    desc.byte_offset = int(byte_offset)
    return desc


def _compact_strides(shape):
    """Row-major strides (in elements) of a compact array of ``shape``."""
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * max(shape[i + 1], 1)
    return tuple(strides)


def _from_dlpack(obj, writable, stream, name):
    """A TensorView of a DLPack producer (``__dlpack__``)."""
    try:
        capsule = _dlpack.export(obj, stream)
    except (BufferError, RuntimeError, TypeError, ValueError) as exc:
        raise invalid("%s cannot be passed through DLPack: %s" % (name, exc)) from exc
    try:
        managed = _dlpack.take(capsule)
    except ValueError as exc:
        raise invalid("%s: %s" % (name, exc)) from None
    try:
        dl = managed.dl_tensor
        code, bits, lanes = dl.dtype.code, dl.dtype.bits, dl.dtype.lanes
        dtype = _DTYPES.get((code, bits)) if lanes == 1 else None
        if dtype is None:
            raise dtype_error("%s has dtype %s; %s" % (name, _dtype_name(code, bits, lanes), _SUPPORTED))
        ndim = int(dl.ndim)
        if ndim > _capi.S2FT_MAX_DIMS or ndim < 0:
            raise shape_error("%s has %d dimensions; libs2ft takes at most %d" % (name, ndim, _capi.S2FT_MAX_DIMS))
        shape = [dl.shape[i] for i in range(ndim)]
        strides = [dl.strides[i] for i in range(ndim)] if dl.strides else None
        readonly = bool(managed.flags & _dlpack.FLAG_READ_ONLY)
        if writable and readonly:
            raise invalid("%s is read-only (DLPack flag), but libs2ft writes to it" % name)
        if writable and managed.flags & _dlpack.FLAG_IS_COPIED:
            raise invalid("%s was copied by its producer; results written to the copy would be lost" % name)
        desc = _descriptor(dl.data, dtype, shape, strides, (dl.device.device_type, dl.device.device_id),
                           dl.byte_offset, name)
    except BaseException:
        managed.release()
        raise
    return TensorView(desc, obj, managed, readonly)


def _from_array_interface(obj, writable, name):
    """A TensorView of an object with NumPy's ``__array_interface__`` (host memory)."""
    ai = obj.__array_interface__
    data = ai.get("data")
    if not isinstance(data, tuple) or ai.get("mask") is not None:
        raise invalid("%s: only array interfaces with a (pointer, read-only) data tuple are accepted" % name)
    address, readonly = data
    typestr = ai["typestr"]
    dtype = {"<f4": DType.F32, "<f2": DType.F16}.get(typestr)
    if dtype is None and getattr(getattr(obj, "dtype", None), "name", "") == "bfloat16" and typestr[1:] == "V2":
        dtype = DType.BF16  # ml_dtypes.bfloat16 (JAX's NumPy bfloat16)
    if dtype is None:
        raise dtype_error("%s has dtype %s; %s" % (name, getattr(obj, "dtype", typestr), _SUPPORTED))
    if writable and readonly:
        raise invalid("%s is read-only, but libs2ft writes to it" % name)
    shape = ai["shape"]
    strides = ai.get("strides")
    if strides is not None:
        size = dtype.itemsize
        if any(s % size for s in strides):
            raise shape_error("%s has strides %s (bytes) that are not multiples of its element size" % (name, strides))
        strides = [s // size for s in strides]
    desc = _descriptor(address, dtype, shape, strides, (DeviceType.CPU, 0), 0, name)
    return TensorView(desc, obj, None, readonly)


def as_tensor(obj, *, writable=False, stream=None, name="tensor"):
    """A TensorView of ``obj`` (a TensorView is returned as it is).

    ``writable``: the library will write to the tensor (refuse read-only
    producers). ``stream``: for CUDA producers, the stream the data will be
    used on, as the array API's ``__dlpack__(stream=...)`` takes it (None or
    1: the legacy default stream; 2: the per-thread default; else a
    cudaStream_t as int); the producer makes that stream wait for its work.
    ``name`` names the argument in error messages.
    """
    if isinstance(obj, TensorView):
        if obj.released:
            raise state_error("%s is a released TensorView" % name)
        if writable and obj.readonly:
            raise invalid("%s is read-only, but libs2ft writes to it" % name)
        return obj
    if obj is None:
        raise invalid("%s is None; expected a tensor (an object with __dlpack__)" % name)
    if hasattr(obj, "__dlpack__"):
        try:
            return _from_dlpack(obj, writable, stream, name)
        except InvalidArgumentError as exc:
            # NumPy exports only writable arrays of standard dtypes through
            # DLPack; its array interface has the rest.
            if not hasattr(obj, "__array_interface__") or not isinstance(exc.__cause__, BufferError):
                raise
    if hasattr(obj, "__array_interface__"):
        return _from_array_interface(obj, writable, name)
    raise invalid(
        "%s is a %s; expected a tensor: an object with __dlpack__ (NumPy, PyTorch, JAX, CuPy) "
        "or __array_interface__" % (name, type(obj).__name__)
    )


class Borrowed:
    """The tensors of one library call: converts arguments, releases the views it made on exit.

    Views passed in as TensorView objects are left alone (their owner releases them).
    """

    __slots__ = ("_stream", "_made")

    def __init__(self, stream=None):
        """``stream``: passed to CUDA producers' ``__dlpack__`` (see as_tensor)."""
        self._stream = stream
        self._made = []

    def view(self, obj, name, writable=False):
        """The TensorView of ``obj`` (required)."""
        view = as_tensor(obj, writable=writable, stream=self._stream, name=name)
        if view is not obj:
            self._made.append(view)
        return view

    def pointer(self, obj, name, writable=False):
        """A pointer to the descriptor of ``obj`` for a C argument; None gives NULL."""
        if obj is None:
            return None
        return ctypes.pointer(self.view(obj, name, writable).desc)

    def keep(self):
        """Hands the views made so far to the caller (they are no longer released on exit)."""
        made, self._made = self._made, []
        return made

    def __enter__(self):
        """Returns this scope."""
        return self

    def __exit__(self, *exc):
        """Releases the views made in this scope."""
        made, self._made = self._made, []
        for view in made:
            view.release()
