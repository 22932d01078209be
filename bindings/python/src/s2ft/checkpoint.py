"""Checkpoint: a Hugging Face model folder (or one .safetensors file), memory-mapped copy-on-write."""

import collections
import ctypes
import json

from . import _capi
from ._convert import decode, int_arg, path_arg, str_arg
from ._handle import Handle
from ._library import api as _api
from .errors import check, invalid
from .shape import ModelShape
from .tensor import Borrowed, TensorView

#: One stored tensor: its name, safetensors dtype name ("F32", "BF16", "I64", ...), shape and size in bytes.
TensorInfo = collections.namedtuple("TensorInfo", ["name", "dtype", "shape", "nbytes"])


class CheckpointTensor(TensorView):
    """A zero-copy view of a checkpoint's F32/F16/BF16 tensor (its ``name``); keeps the checkpoint open.

    Writes through it (e.g. via ``numpy()``) change the checkpoint's
    contents in this process, never the files.
    """

    __slots__ = ("name",)

    def __init__(self, desc, owner, name):
        """Wraps the descriptor s2ft_checkpoint_tensor filled; ``owner`` is the checkpoint's Resource."""
        super().__init__(desc, owner)
        self.name = name

    def __repr__(self):
        """The name, dtype and shape."""
        if self.released:
            return "<CheckpointTensor %s released>" % self.name
        return "<CheckpointTensor %s %s %s>" % (self.name, self.dtype.name.lower(), list(self.shape))


class Checkpoint(Handle):
    """A checkpoint opened for reading: config.json with model.safetensors or an index and shards, or one file.

    Every file is checked at open and mapped privately: nothing is read
    until used. Tensor views (tensor(), tensor_data(), Model.from_checkpoint)
    keep the checkpoint open, so closing it first never leaves a dangling
    view: the files are unmapped when the last view goes.
    """

    _what = "Checkpoint"

    def __init__(self, path):
        """Opens the checkpoint at ``path`` (a folder or one .safetensors file)."""
        raw = ctypes.c_void_p()
        check(_api.s2ft_checkpoint_open(path_arg(path, "path"), ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_checkpoint_destroy)

    @classmethod
    def open(cls, path):
        """Opens the checkpoint at ``path`` (same as the constructor)."""
        return cls(path)

    @property
    def shape(self):
        """The ModelShape of a LLaMA-family checkpoint (llama, mistral, qwen2), checked against its weights.

        StateError for a checkpoint opened as one file (no config.json).
        """
        res = self._live()
        out = _capi.s2ft_model_shape()
        check(_api.s2ft_checkpoint_shape(res.ptr, ctypes.byref(out)))
        return ModelShape.from_c(out)

    @property
    def config(self):
        """The text of config.json, or None when the checkpoint has none."""
        res = self._live()
        text = ctypes.c_char_p()
        check(_api.s2ft_checkpoint_config(res.ptr, ctypes.byref(text)))
        return decode(text.value)

    def config_dict(self):
        """config.json parsed as a dict, or None when the checkpoint has none."""
        text = self.config
        return None if text is None else json.loads(text)

    @property
    def files(self):
        """The safetensors files of the checkpoint (names inside its folder), in the index's order."""
        res = self._live()
        count = ctypes.c_int64()
        check(_api.s2ft_checkpoint_file_count(res.ptr, ctypes.byref(count)))
        names = []
        for index in range(count.value):
            name = ctypes.c_char_p()
            check(_api.s2ft_checkpoint_file(res.ptr, index, ctypes.byref(name)))
            names.append(decode(name.value))
        return names

    def __len__(self):
        """The number of tensors in all files."""
        res = self._live()
        count = ctypes.c_int64()
        check(_api.s2ft_checkpoint_tensor_count(res.ptr, ctypes.byref(count)))
        return count.value

    def tensor_info(self, index):
        """The TensorInfo of tensor ``index`` (files in index order, file order within each)."""
        res = self._live()
        index = int_arg(index, "index")
        name, dtype = ctypes.c_char_p(), ctypes.c_char_p()
        ndim = ctypes.c_int32()
        nbytes = ctypes.c_uint64()
        check(_api.s2ft_checkpoint_tensor_info(res.ptr, index, ctypes.byref(name), ctypes.byref(dtype),
                                               ctypes.byref(ndim), None, 0, ctypes.byref(nbytes)))
        shape = (ctypes.c_int64 * max(ndim.value, 1))()
        check(_api.s2ft_checkpoint_tensor_info(res.ptr, index, None, None, ctypes.byref(ndim), shape,
                                               len(shape), None))
        return TensorInfo(decode(name.value), decode(dtype.value), tuple(shape[: ndim.value]), nbytes.value)

    def tensors(self):
        """The TensorInfo of every tensor, in order."""
        return [self.tensor_info(i) for i in range(len(self))]

    def names(self):
        """The names of every tensor, in order."""
        self._live()
        if getattr(self, "_names", None) is None:
            self._names = [info.name for info in self.tensors()]  # fixed at open
        return list(self._names)

    def __iter__(self):
        """Iterates over the tensor names."""
        return iter(self.names())

    def __contains__(self, name):
        """True when the checkpoint has a tensor ``name``."""
        return isinstance(name, str) and name in self.names()

    def tensor(self, name):
        """A zero-copy CheckpointTensor of the F32/F16/BF16 tensor ``name`` (DtypeError for other dtypes)."""
        res = self._live()
        desc = _capi.s2ft_tensor()
        check(_api.s2ft_checkpoint_tensor(res.ptr, str_arg(name, "name"), ctypes.byref(desc)))
        return CheckpointTensor(desc, res, name)

    def tensor_data(self, name):
        """The raw little-endian bytes of tensor ``name`` (any dtype) as a read-only memoryview, zero-copy."""
        res = self._live()
        data = ctypes.c_void_p()
        nbytes = ctypes.c_uint64()
        check(_api.s2ft_checkpoint_tensor_data(res.ptr, str_arg(name, "name"), ctypes.byref(data),
                                               ctypes.byref(nbytes)))
        if not nbytes.value:
            return memoryview(b"")
        buffer = (ctypes.c_ubyte * nbytes.value).from_address(data.value)
        buffer.checkpoint = res  # the mapping lives while the memoryview does
        return memoryview(buffer).cast("B").toreadonly()

    def write(self, out_dir, replacements=None, *, max_shard_bytes=0, copy_other_files=True, exclude=(),
              progress=None):
        """Writes a copy of the checkpoint into the folder ``out_dir`` (not its own folder).

        ``replacements`` maps tensor names to new data (CPU tensors of the
        tensor's shape, F32/F16/BF16, any strides; rounded to the stored
        dtype). ``max_shard_bytes`` 0 keeps the source's files byte for
        byte where unchanged; else the tensors are resharded. Other files
        of the folder are copied unless ``copy_other_files`` is False or
        they are named in ``exclude``. ``progress(done_bytes, total_bytes)``
        is called after each tensor; an exception it raises is re-raised
        when the write has finished (the write is not interrupted).
        """
        res = self._live()
        items = list(replacements.items()) if hasattr(replacements, "items") else list(replacements or ())
        opts = _capi.s2ft_checkpoint_write_options()
        check(_api.s2ft_checkpoint_write_options_init(ctypes.byref(opts),
                                                      _capi.S2FT_CHECKPOINT_WRITE_OPTIONS_VERSION))
        opts.max_shard_bytes = int_arg(max_shard_bytes, "max_shard_bytes", unsigned=True)
        opts.copy_other_files = 1 if copy_other_files else 0
        if isinstance(exclude, (str, bytes)):
            raise invalid("exclude is a single string; expected a sequence of file names")
        excluded = [str_arg(e, "exclude[%d]" % i) for i, e in enumerate(exclude)]
        raw_exclude = (ctypes.c_char_p * max(len(excluded), 1))(*excluded)
        opts.exclude = ctypes.cast(raw_exclude, ctypes.POINTER(ctypes.c_char_p)) if excluded else None
        opts.n_exclude = len(excluded)
        raised = []
        if progress is not None:
            if not callable(progress):
                raise invalid("progress is %r; expected a callable(done_bytes, total_bytes)" % (progress,))

            def report(_user, done, total):
                # An exception must not unwind into C: keep it, raise it after the call.
                if raised:
                    return
                try:
                    progress(done, total)
                except BaseException as exc:  # noqa: BLE001 (re-raised below, KeyboardInterrupt included)
                    raised.append(exc)

            callback = _capi.s2ft_progress_fn(report)
            opts.progress = callback
        names = [str_arg(n, "replacement name") for n, _ in items]
        raw_names = (ctypes.c_char_p * max(len(names), 1))(*names)
        with Borrowed() as b:
            raw_tensors = (_capi.s2ft_tensor * max(len(items), 1))()
            for i, (name, tensor) in enumerate(items):
                raw_tensors[i] = b.view(tensor, "replacements[%r]" % (name,)).desc
            check(_api.s2ft_checkpoint_write(res.ptr, path_arg(out_dir, "out_dir"), raw_names, raw_tensors,
                                             len(items), ctypes.byref(opts)))
        if raised:
            raise raised[0]
