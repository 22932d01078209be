"""The DLPack consumer protocol, with a stand-in producer that speaks DLPack 1.x (NumPy 1.24 and
PyTorch 1.13 here only speak 0.x): versioned capsules, flags, NULL strides, byte offsets, streams,
capsule renaming and exactly one deleter call."""

import ctypes

import numpy as np
import pytest

import s2ft
from s2ft import _dlpack

_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]
_VERSIONED, _LEGACY = b"dltensor_versioned", b"dltensor"
_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class Producer:
    """Exports a NumPy f32 array as DLPack 1.x (or 0.x with versioned=False), recording calls and deletions."""

    def __init__(self, array, *, versioned=True, flags=0, device=(1, 0), major=1, strides=True, offset=0,
                 dtype=(2, 32, 1)):
        self.array, self.versioned, self.flags, self.device = array, versioned, flags, device
        self.major, self.strides, self.offset, self.dtype = major, strides, offset, dtype
        self.calls, self.deleted, self.capsules = [], 0, []
        self._deleter = _DELETER(self._delete)
        self._keep = []

    def _delete(self, address):
        self.deleted += 1

    def __dlpack_device__(self):
        return self.device

    def __dlpack__(self, *, stream=None, max_version=None):
        self.calls.append({"stream": stream, "max_version": max_version})
        a = self.array
        shape = (ctypes.c_int64 * a.ndim)(*a.shape)
        strides = (ctypes.c_int64 * a.ndim)(*[s // a.itemsize for s in a.strides])
        t = _dlpack.DLTensor()
        t.data = a.ctypes.data
        t.device.device_type, t.device.device_id = self.device
        t.ndim = a.ndim
        t.dtype.code, t.dtype.bits, t.dtype.lanes = self.dtype
        t.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
        t.strides = ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64)) if self.strides else None
        t.byte_offset = self.offset
        deleter = ctypes.cast(self._deleter, ctypes.c_void_p).value
        if self.versioned and max_version is not None:
            m = _dlpack.DLManagedTensorVersioned()
            m.version.major, m.version.minor = self.major, 0
            m.flags = self.flags
            name = _VERSIONED
        else:
            m = _dlpack.DLManagedTensor()
            name = _LEGACY
        m.dl_tensor = t
        m.deleter = deleter
        self._keep += [shape, strides, m]
        capsule = _new_capsule(ctypes.addressof(m), name, None)
        self.capsules.append(capsule)
        return capsule


def test_versioned_capsule_is_taken_and_released_once(ctx):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    p = Producer(x)
    view = s2ft.as_tensor(p)
    assert p.calls == [{"stream": None, "max_version": _dlpack.MAX_VERSION}]
    assert _capsule_name(p.capsules[0]) == b"used_dltensor_versioned"
    assert view.shape == (3, 4) and view.strides == (4, 1) and view.data_ptr == x.ctypes.data
    assert p.deleted == 0
    view.release()
    view.release()
    assert p.deleted == 1
    # In a call: converted, used and released when the call returns.
    w = np.ones((2, 4), np.float32)
    y = np.full((3, 2), np.nan, np.float32)
    s2ft.forward_partial(ctx, s2ft.Slice.range("columns", 0, 1), p, w, y)
    assert p.deleted == 2 and np.array_equal(y, x.sum(axis=1, keepdims=True).repeat(2, axis=1))


def test_legacy_capsule_null_strides_and_byte_offset(ctx):
    base = np.arange(20, dtype=np.float32)
    p = Producer(base[:12].reshape(3, 4), versioned=False, strides=False, offset=8 * 4)
    view = s2ft.as_tensor(p)
    assert _capsule_name(p.capsules[0]) == b"used_dltensor"
    assert view.strides == (4, 1)  # NULL strides: compact row-major
    np.testing.assert_array_equal(view.numpy(), base[8:20].reshape(3, 4))  # byte_offset honoured
    view.release()
    assert p.deleted == 1


def test_flags_and_versions_are_respected(ctx):
    x = np.zeros((2, 2), np.float32)
    ro = Producer(x, flags=_dlpack.FLAG_READ_ONLY)
    assert s2ft.as_tensor(ro).readonly
    with pytest.raises(s2ft.InvalidArgumentError, match="read-only"):
        s2ft.forward_partial(ctx, s2ft.Slice.range("columns", 0, 1), x, x, ro)
    assert ro.deleted == 2  # the refused tensor was returned too
    copied = Producer(x, flags=_dlpack.FLAG_IS_COPIED)
    with pytest.raises(s2ft.InvalidArgumentError, match="copied"):
        s2ft.as_tensor(copied, writable=True)
    assert copied.deleted == 1
    future = Producer(x, major=2)
    with pytest.raises(s2ft.InvalidArgumentError, match="DLPack 2.0"):
        s2ft.as_tensor(future)
    assert future.deleted == 1
    f64 = Producer(x, dtype=(2, 64, 1))
    with pytest.raises(s2ft.DtypeError, match="float64"):
        s2ft.as_tensor(f64)
    assert f64.deleted == 1
    vec = Producer(x, dtype=(2, 32, 4))
    with pytest.raises(s2ft.DtypeError, match="float32x4"):
        s2ft.as_tensor(vec)


def test_streams_go_to_cuda_producers_only():
    x = np.zeros((2, 2), np.float32)
    cpu = Producer(x)
    s2ft.as_tensor(cpu, stream=7).release()
    assert cpu.calls[0]["stream"] is None
    gpu = Producer(x, device=(2, 0))
    view = s2ft.as_tensor(gpu, stream=7)
    assert gpu.calls[0]["stream"] == 7 and view.device == s2ft.Device(s2ft.DeviceType.CUDA, 0)
    with s2ft.Context.cpu() as ctx:
        assert ctx.dlpack_stream is None
        # The library refuses a CUDA tensor on a CPU context without reading it.
        with pytest.raises(s2ft.DeviceError):
            s2ft.forward_partial(ctx, s2ft.Slice.range("columns", 0, 1), view, x, np.zeros((2, 2), np.float32))
    view.release()
    assert gpu.deleted == 1


class OldProducer:
    """A DLPack 0.x producer whose __dlpack__ has no max_version keyword (NumPy < 2, PyTorch < 2.4)."""

    def __init__(self, array):
        self.inner = Producer(array, versioned=False)

    def __dlpack__(self, stream=None):
        return self.inner.__dlpack__(stream=stream)

    def __dlpack_device__(self):
        return self.inner.__dlpack_device__()


def test_producers_without_max_version():
    p = OldProducer(np.zeros(3, np.float32))
    s2ft.as_tensor(p).release()
    assert p.inner.calls == [{"stream": None, "max_version": None}] and p.inner.deleted == 1


def test_array_interface_fallback():
    class OnlyInterface:
        def __init__(self, array):
            self.array = array
            self.__array_interface__ = array.__array_interface__

    a = np.arange(6, dtype=np.float16).reshape(2, 3)[:, ::2]
    view = s2ft.as_tensor(OnlyInterface(a))
    assert view.dtype == s2ft.DType.F16 and view.strides == (3, 2) and view.data_ptr == a.ctypes.data
    with pytest.raises(s2ft.DtypeError):
        s2ft.as_tensor(OnlyInterface(np.zeros(2, np.int64)))
    with pytest.raises(s2ft.InvalidArgumentError, match="expected a tensor"):
        s2ft.as_tensor(3.0)


def test_views_export_through_dlpack():
    base = len(_dlpack._EXPORTS)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    view = s2ft.TensorView.from_pointer(x.ctypes.data, s2ft.DType.F32, (2, 3), owner=x)
    assert view.__dlpack_device__() == (1, 0)
    y = np.from_dlpack(view)
    assert y.ctypes.data == x.ctypes.data and np.array_equal(y, x)
    view.release()  # the export keeps its own reference to the owner
    assert len(_dlpack._EXPORTS) == base + 1
    del y
    assert len(_dlpack._EXPORTS) == base
    # A capsule nobody consumed is freed by its destructor.
    readonly = s2ft.TensorView.from_pointer(x.ctypes.data, s2ft.DType.F32, (6,), owner=x, readonly=True)
    capsule = readonly.__dlpack__(max_version=(1, 0))
    assert len(_dlpack._EXPORTS) == base + 1
    del capsule
    assert len(_dlpack._EXPORTS) == base
    # DLPack 1.x consumers see the read-only flag; 0.x consumers cannot, so they are refused.
    taken = _dlpack.take(readonly.__dlpack__(max_version=(1, 0)))
    assert taken.version == (1, 0) and taken.flags & _dlpack.FLAG_READ_ONLY
    taken.release()
    assert len(_dlpack._EXPORTS) == base
    with pytest.raises(BufferError, match="read-only"):
        readonly.__dlpack__()
    # A view of another DLPack producer is not re-exported.
    borrowed = s2ft.as_tensor(x)
    with pytest.raises(BufferError, match="producer"):
        borrowed.__dlpack__()
    borrowed.release()
