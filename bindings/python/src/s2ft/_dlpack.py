"""The DLPack consumer protocol over ctypes: capsule in, DLTensor fields and a deleter out.

A producer's ``__dlpack__`` returns a PyCapsule named ``dltensor`` (a
DLManagedTensor, DLPack 0.x) or ``dltensor_versioned`` (a
DLManagedTensorVersioned, DLPack 1.x, which adds a version and flags). The
consumer takes ownership by renaming the capsule ``used_dltensor`` /
``used_dltensor_versioned`` (so the capsule's destructor no longer frees it)
and must call the managed tensor's ``deleter`` once it is done with the
memory. This module does exactly that and nothing else; tensor.py turns
the result into an s2ft_tensor descriptor.
"""

import ctypes
from ctypes import POINTER, Structure, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

# DLDeviceType values this module names.
KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3
KDL_CUDA_MANAGED = 13

# DLPack 1.x flags of DLManagedTensorVersioned.
FLAG_READ_ONLY = 1 << 0
FLAG_IS_COPIED = 1 << 1

#: The newest DLPack version this consumer reads; passed as ``max_version``.
MAX_VERSION = (1, 0)


class DLDevice(Structure):
    """DLPack's DLDevice."""

    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class DLDataType(Structure):
    """DLPack's DLDataType."""

    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class DLTensor(Structure):
    """DLPack's DLTensor (shape and strides are pointers; strides may be NULL)."""

    _fields_ = [
        ("data", c_void_p),
        ("device", DLDevice),
        ("ndim", c_int32),
        ("dtype", DLDataType),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
        ("byte_offset", c_uint64),
    ]


class DLManagedTensor(Structure):
    """DLPack 0.x's DLManagedTensor (capsule name ``dltensor``)."""

    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


class DLPackVersion(Structure):
    """DLPack 1.x's DLPackVersion."""

    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLManagedTensorVersioned(Structure):
    """DLPack 1.x's DLManagedTensorVersioned (capsule name ``dltensor_versioned``)."""

    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", c_void_p),
        ("deleter", c_void_p),
        ("flags", c_uint64),
        ("dl_tensor", DLTensor),
    ]


# The capsule C API, called with the GIL held (pythonapi is a PyDLL).
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.restype = c_void_p
_capsule_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.restype = ctypes.c_int
_capsule_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]

# The names are module constants: a renamed capsule keeps a pointer to its
# name, which the producer's capsule destructor reads when the capsule dies.
_NAME = b"dltensor"
_USED_NAME = b"used_dltensor"
_NAME_VERSIONED = b"dltensor_versioned"
_USED_NAME_VERSIONED = b"used_dltensor_versioned"

# Deleters are called with the GIL held: NumPy's frees a Python reference.
_DELETER = ctypes.PYFUNCTYPE(None, c_void_p)


class ManagedTensor:
    """A DLPack tensor this consumer owns: its DLTensor, flags, and a release() that calls the deleter once."""

    __slots__ = ("dl_tensor", "flags", "version", "_address", "_deleter")

    def __init__(self, address, deleter, dl_tensor, flags, version):
        """Wraps the managed tensor at ``address`` (already taken from its capsule)."""
        self._address = address
        self._deleter = deleter
        self.dl_tensor = dl_tensor
        self.flags = flags
        self.version = version

    def __reduce_ex__(self, protocol):
        """Refuses pickling and deep copies: a copy would call the deleter twice."""
        raise TypeError("a DLPack tensor taken from its producer cannot be pickled or deep-copied")

    def release(self, _deleter_type=_DELETER):
        """Calls the producer's deleter (once; later calls do nothing)."""
        # _deleter_type is bound at definition: this may run at interpreter exit.
        deleter, self._deleter = self._deleter, None
        if deleter:
            self.dl_tensor = None
            _deleter_type(deleter)(self._address)

    def __del__(self):
        """Releases the tensor if its owner forgot to."""
        self.release()


def take(capsule):
    """Takes ownership of the tensor in a DLPack capsule; returns a ManagedTensor.

    Raises ValueError for a capsule that is not an unused DLPack tensor, or a
    DLPack major version this consumer does not read (the tensor is released).
    """
    if _capsule_is_valid(capsule, _NAME_VERSIONED):
        address = _capsule_get_pointer(capsule, _NAME_VERSIONED)
        if not address or _capsule_set_name(capsule, _USED_NAME_VERSIONED) != 0:
            raise ValueError("could not take the DLPack capsule")
        managed = DLManagedTensorVersioned.from_address(address)
        version = (managed.version.major, managed.version.minor)
        owned = ManagedTensor(address, managed.deleter, managed.dl_tensor, managed.flags, version)
        if version[0] != MAX_VERSION[0]:
            owned.release()
            raise ValueError(
                "the producer returned DLPack %d.%d; this consumer reads DLPack %d.x"
                % (version[0], version[1], MAX_VERSION[0])
            )
        return owned
    if _capsule_is_valid(capsule, _NAME):
        address = _capsule_get_pointer(capsule, _NAME)
        if not address or _capsule_set_name(capsule, _USED_NAME) != 0:
            raise ValueError("could not take the DLPack capsule")
        managed = DLManagedTensor.from_address(address)
        return ManagedTensor(address, managed.deleter, managed.dl_tensor, 0, (0, 0))
    raise ValueError("__dlpack__ did not return an unused 'dltensor' or 'dltensor_versioned' capsule")


def export(obj, stream):
    """Calls ``obj.__dlpack__`` as a consumer of DLPack up to MAX_VERSION; returns the capsule.

    ``stream`` is passed only for CUDA devices (array API rules: None or 1
    for the legacy default stream, 2 per-thread default, else a
    cudaStream_t as an int); host producers get ``stream=None``.
    """
    device_type = None
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is not None:
        device_type = int(dlpack_device()[0])
    kwargs = {}
    if device_type in (KDL_CUDA, KDL_CUDA_MANAGED):
        kwargs["stream"] = stream
    try:
        return obj.__dlpack__(max_version=MAX_VERSION, **kwargs)
    except TypeError:
        # A producer older than DLPack 1.0's protocol (NumPy < 2, PyTorch < 2.4)
        # has no max_version keyword.
        return obj.__dlpack__(**kwargs)


# ---- producer side: TensorView.__dlpack__ ---------------------------------------------------
# Exported tensors, by the address of their managed struct: (struct, shape, strides, owner).
# The entry keeps the memory's owner alive until the consumer calls the deleter.
_EXPORTS = {}

_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [c_void_p, ctypes.c_char_p, c_void_p]
# The capsule destructor receives a capsule being deallocated: look at it through a raw pointer,
# never as a Python object (that would resurrect it).
_raw_capsule_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, c_void_p, ctypes.c_char_p)(
    ("PyCapsule_IsValid", ctypes.pythonapi))
_raw_capsule_get_pointer = ctypes.PYFUNCTYPE(c_void_p, c_void_p, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


def _forget(address, _exports=_EXPORTS):
    """The exported tensors' deleter: drops the entry (its owner with it). Binds no globals: it may run at exit."""
    _exports.pop(address, None)


def _capsule_destructor(capsule, _valid=_raw_capsule_is_valid, _get=_raw_capsule_get_pointer,
                        _forget=_forget, _names=(_NAME, _NAME_VERSIONED)):
    """Frees an exported tensor whose capsule died unconsumed (still named dltensor[_versioned])."""
    for name in _names:
        if _valid(capsule, name):
            _forget(_get(capsule, name))


# ctypes callbacks take the GIL themselves (a consumer may free its tensor from any thread).
_DELETER_CALLBACK = ctypes.CFUNCTYPE(None, c_void_p)(_forget)
_DESTRUCTOR_CALLBACK = ctypes.CFUNCTYPE(None, c_void_p)(_capsule_destructor)
# Tensors may be freed late in interpreter shutdown: these must never be deallocated.
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_DELETER_CALLBACK))
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_DESTRUCTOR_CALLBACK))


def produce(desc, owner, readonly, max_version):
    """A DLPack capsule over the memory an s2ft_tensor ``desc`` describes, keeping ``owner`` alive until deleted.

    A consumer that passes ``max_version`` >= (1, 0) gets a DLPack 1.0
    versioned capsule (with the read-only flag); others get a 0.x capsule.
    """
    ndim = desc.ndim
    shape = (c_int64 * max(ndim, 1))(*desc.shape[:ndim])
    strides = (c_int64 * max(ndim, 1))(*desc.strides[:ndim])
    versioned = max_version is not None and tuple(max_version)[0] >= 1
    managed = DLManagedTensorVersioned() if versioned else DLManagedTensor()
    t = managed.dl_tensor
    t.data = desc.data
    t.device.device_type, t.device.device_id = desc.device.type, desc.device.id
    t.ndim = ndim
    t.dtype.code, t.dtype.bits, t.dtype.lanes = desc.dtype.code, desc.dtype.bits, desc.dtype.lanes
    t.shape = ctypes.cast(shape, POINTER(c_int64))
    t.strides = ctypes.cast(strides, POINTER(c_int64))
    t.byte_offset = desc.byte_offset
    managed.deleter = ctypes.cast(_DELETER_CALLBACK, c_void_p).value
    if versioned:
        managed.version.major, managed.version.minor = 1, 0
        managed.flags = FLAG_READ_ONLY if readonly else 0
    address = ctypes.addressof(managed)
    _EXPORTS[address] = (managed, shape, strides, owner)
    try:
        return _capsule_new(address, _NAME_VERSIONED if versioned else _NAME,
                            ctypes.cast(_DESTRUCTOR_CALLBACK, c_void_p).value)
    except BaseException:
        _EXPORTS.pop(address, None)
        raise
