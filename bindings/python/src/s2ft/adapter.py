"""Adapter: what fine-tuning changed (base-order lines and their f32 deltas), and mixed-adapter serving."""

import collections
import collections.abc
import ctypes
import math
import weakref

from . import _capi
from ._convert import decode, double_array, enum_arg, float_arg, int64_array, int32_arg, path_arg, str_arg
from ._handle import Handle, live
from ._library import api as _api
from .context import borrow, context_arg, dlpack_stream
from .enums import Target, Weight
from .errors import check, invalid, state_error
from .shape import ModelShape, shape_arg
from .tensor import Borrowed
from .weights import fill_layer_weights

_TRAINED = ("o", "v", "down", "up")

#: The sparse entries of one (layer, weight) of an adapter (Adapter.sparse): ascending base-order flat
#: indices (a list), their f32 deltas (a NumPy array) and the base fingerprint of the whole weight (0: unknown).
SparseEntries = collections.namedtuple("SparseEntries", ["indices", "deltas", "fingerprint"])

#: What Adapter.sparse_info() reports: the Weights with sparse entries in some layer (a tuple) and the number of
#: sparse entries in all.
SparseInfo = collections.namedtuple("SparseInfo", ["weights", "entries"])

#: The low-rank entry of one (layer, weight) of an adapter (Adapter.low_rank): the factors b [rows, k] and
#: a [k, cols] (NumPy f32 arrays; the entry's delta is b @ a) and the base fingerprint of the whole weight (0: unknown).
LowRankEntry = collections.namedtuple("LowRankEntry", ["b", "a", "fingerprint"])

#: What Adapter.low_rank_info() reports: the Weights with a low-rank entry in some layer (a tuple) and the number
#: of low-rank entries (layer, weight) in all.
LowRankInfo = collections.namedtuple("LowRankInfo", ["weights", "entries"])


def _weight_arg(weight):
    """A Weight argument: a Weight, a Target (same id), its int value or its name."""
    if isinstance(weight, Target):
        return Weight(int(weight))
    return enum_arg(weight, Weight, "weight")


def _scale_arg(scale, name="scale"):
    """A scale for C: None means NaN (the adapter's default scale)."""
    return math.nan if scale is None else float_arg(scale, name)


class AdapterMetadata(collections.abc.MutableMapping):
    """An adapter's provenance metadata as a dict-like view (keys in ascending byte order).

    Keys are 1 to 255 bytes of [A-Za-z0-9._-]; values are str (at most 65536
    bytes of UTF-8); at most 256 keys. Changes go to the adapter at once.
    """

    def __init__(self, adapter):
        """The metadata of ``adapter``."""
        self._adapter = adapter

    def __getitem__(self, key):
        """The value of ``key``; KeyError when absent."""
        res = self._adapter._live()
        value = ctypes.c_char_p()
        check(_api.s2ft_adapter_meta(res.ptr, str_arg(key, "key"), ctypes.byref(value)))
        if value.value is None:
            raise KeyError(key)
        return decode(value.value)

    def __setitem__(self, key, value):
        """Sets ``key`` to the str ``value``."""
        res = self._adapter._live()
        check(_api.s2ft_adapter_set_meta(res.ptr, str_arg(key, "key"), str_arg(value, "value")))

    def __delitem__(self, key):
        """Removes ``key``; KeyError when absent."""
        self[key]  # KeyError when absent, as a dict does
        res = self._adapter._live()
        check(_api.s2ft_adapter_set_meta(res.ptr, str_arg(key, "key"), None))

    def __len__(self):
        """The number of keys."""
        res = self._adapter._live()
        count = ctypes.c_int64()
        check(_api.s2ft_adapter_meta_count(res.ptr, ctypes.byref(count)))
        return count.value

    def __iter__(self):
        """The keys, in ascending byte order (a snapshot)."""
        res = self._adapter._live()
        keys = []
        for index in range(len(self)):
            key = ctypes.c_char_p()
            check(_api.s2ft_adapter_meta_at(res.ptr, index, ctypes.byref(key), None))
            keys.append(decode(key.value))
        return iter(keys)

    def __repr__(self):
        """The metadata as a dict."""
        return "AdapterMetadata(%r)" % dict(self.items())


class Adapter(Handle):
    """Per (layer, target): the trained lines in base order, their f32 delta and base fingerprints (s2ft_adapter).

    Deltas are [out, k] for column targets (O, DOWN) and [k, in] for row
    targets (V, UP). An adapter may also hold unstructured sparse entries of
    any of a layer's seven Weights (set_sparse(), sparse(), sparse_info()) and low-rank entries, the delta of a
    whole weight as factors b a (set_low_rank(), set_sorsa(), low_rank(), low_rank_info()). Made empty (``Adapter(shape, name, default_scale)``)
    and filled with set(), or by from_training(), load() and fuse(). An
    adapter applied to a Model is kept alive by it and must not be changed
    (set() raises StateError) until it is removed.
    """

    _what = "Adapter"

    def __init__(self, shape, name="", default_scale=1.0, *, _raw=None):
        """An empty adapter for a ModelShape; ``default_scale`` is used when a scale is not given."""
        self._models = weakref.WeakSet()
        if _raw is not None:
            self._init_resource(_raw, _api.s2ft_adapter_destroy)
            return
        raw_shape = shape_arg(shape)
        raw = ctypes.c_void_p()
        check(_api.s2ft_adapter_create(ctypes.byref(raw_shape), str_arg(name, "name"),
                                       float_arg(default_scale, "default_scale"), ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_adapter_destroy)

    @classmethod
    def _own(cls, raw):
        """Wraps a handle the library just created."""
        return cls(None, _raw=raw)

    @classmethod
    def load(cls, path):
        """Loads an adapter file (safetensors, checked as hostile input)."""
        raw = ctypes.c_void_p()
        check(_api.s2ft_adapter_load(path_arg(path, "path"), ctypes.byref(raw)))
        return cls._own(raw.value)

    @classmethod
    def from_training(cls, ctx, selection, base, trained, *, permuted=False, name=""):
        """delta = trained slice - base slice for every (layer, target) the Selection trains.

        ``base`` and ``trained`` are per-layer LayerWeights (only o, v, down
        and up are read, on the CPU; they may differ in dtype). With
        ``permuted`` both are in the selection's permuted order and lines
        are mapped back to base order.
        """
        from .selection import Selection

        res = context_arg(ctx)
        sel_res = live(selection, Selection, "selection")
        base, trained = list(base), list(trained)
        with borrow(res) as b:
            raw_base = (_capi.s2ft_layer_weights * len(base))(
                *[fill_layer_weights(b, w, "base[%d]" % i, False, _TRAINED) for i, w in enumerate(base)])
            raw_trained = (_capi.s2ft_layer_weights * len(trained))(
                *[fill_layer_weights(b, w, "trained[%d]" % i, False, _TRAINED) for i, w in enumerate(trained)])
            n_layers = selection.shape.n_layers
            if len(base) != n_layers or len(trained) != n_layers:
                raise invalid("from_training: base has %d layers and trained %d; the selection has %d"
                              % (len(base), len(trained), n_layers))
            raw = ctypes.c_void_p()
            check(_api.s2ft_adapter_from_training(res.ptr, sel_res.ptr, raw_base, raw_trained,
                                                  1 if permuted else 0, str_arg(name, "name"), ctypes.byref(raw)))
        return cls._own(raw.value)

    @classmethod
    def fuse(cls, adapters, weights=None):
        """One adapter from several: per (layer, target) the union of lines, sum of weights[i] * delta_i.

        ``weights`` None means each adapter's default scale. The result's
        metadata keeps each input's provenance under ``input.<i>.``.
        """
        adapters = list(adapters)
        resources = [live(a, Adapter, "adapters[%d]" % i) for i, a in enumerate(adapters)]
        pointers = (ctypes.c_void_p * len(resources))(*[r.ptr for r in resources])
        raw_weights = None
        if weights is not None:
            raw_weights = double_array(weights, "weights")
            if len(raw_weights) != len(adapters):
                raise invalid("fuse: %d weights for %d adapters" % (len(raw_weights), len(adapters)))
        raw = ctypes.c_void_p()
        check(_api.s2ft_adapter_fuse(pointers, raw_weights, len(adapters), ctypes.byref(raw)))
        return cls._own(raw.value)

    def _check_unapplied(self, what):
        """Raises StateError while a Model has this adapter applied."""
        for model in list(self._models):
            if model._applied_adapter() is self:
                raise state_error("%s: the adapter is applied to a Model; remove it first" % what)

    def set(self, layer, target, lines, delta, base=None):
        """Sets the entry of (layer, target): distinct base-order ``lines`` and their ``delta`` (CPU; copied to f32).

        ``base`` is the full base weight of that target (base order) to
        fingerprint the lines, or None (never checked). Empty ``lines``
        (with delta None) removes the entry.
        """
        res = self._live()
        self._check_unapplied("Adapter.set")
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        array = int64_array(lines, "lines")
        with Borrowed() as b:
            pd = b.pointer(delta, "delta") if len(array) else None
            pb = b.pointer(base, "base")
            check(_api.s2ft_adapter_set(res.ptr, layer, int(target), array, len(array), pd, pb))

    def clear(self, layer, target):
        """Removes the entry of (layer, target)."""
        self.set(layer, target, [], None)

    @property
    def name(self):
        """The adapter's name (set it to rename; at most 255 bytes of UTF-8)."""
        res = self._live()
        return decode(_api.s2ft_adapter_name(res.ptr))

    @name.setter
    def name(self, value):
        """Renames the adapter."""
        self.set_info(value, self.default_scale)

    @property
    def default_scale(self):
        """The scale used when apply/switch/forward_mixed get none."""
        return self._info()[1]

    @default_scale.setter
    def default_scale(self, value):
        """Changes the default scale."""
        self.set_info(self.name, value)

    def set_info(self, name, default_scale):
        """Renames the adapter and sets its default scale."""
        res = self._live()
        check(_api.s2ft_adapter_set_info(res.ptr, str_arg(name, "name"), float_arg(default_scale, "default_scale")))

    def _info(self):
        """(ModelShape, default scale, target mask)."""
        res = self._live()
        shape = _capi.s2ft_model_shape()
        scale = ctypes.c_double()
        targets = ctypes.c_uint32()
        check(_api.s2ft_adapter_info(res.ptr, ctypes.byref(shape), ctypes.byref(scale), ctypes.byref(targets)))
        return ModelShape.from_c(shape), scale.value, targets.value

    @property
    def shape(self):
        """The ModelShape the adapter is made for."""
        return self._info()[0]

    @property
    def targets(self):
        """The Targets with an entry in some layer, as a tuple."""
        mask = self._info()[2]
        return tuple(t for t in Target if mask & t.bit)

    def _lines(self, layer, target, with_fingerprints):
        """(lines, fingerprints or None) of (layer, target)."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        count = ctypes.c_int64()
        check(_api.s2ft_adapter_lines(res.ptr, layer, int(target), None, None, 0, ctypes.byref(count)))
        lines = (ctypes.c_int64 * count.value)()
        prints = (ctypes.c_uint64 * count.value)() if with_fingerprints else None
        check(_api.s2ft_adapter_lines(res.ptr, layer, int(target), lines, prints, count.value, ctypes.byref(count)))
        return list(lines), (list(prints) if with_fingerprints else None)

    def lines(self, layer, target):
        """The base-order lines of (layer, target), ascending (empty: no entry)."""
        return self._lines(layer, target, False)[0]

    def fingerprints(self, layer, target):
        """The base fingerprints of the lines of (layer, target) (0: unknown)."""
        return self._lines(layer, target, True)[1]

    def delta(self, layer, target, out=None):
        """The delta of (layer, target), in the order of lines(): into ``out`` (any CPU tensor and dtype), or a new NumPy f32 array.

        StateError when there is no entry.
        """
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        if out is None:
            import numpy  # only needed to allocate the result

            k = len(self.lines(layer, target))
            rows, cols = self.shape.weight_shape(target)
            shape = (rows, k) if target.axis == 0 else (k, cols)
            out = numpy.empty(shape, numpy.float32)
        with Borrowed() as b:
            check(_api.s2ft_adapter_delta(res.ptr, layer, int(target), b.pointer(out, "out", writable=True)))
        return out

    def set_sparse(self, layer, weight, indices, delta, base=None):
        """Sets the unstructured sparse entries of (layer, ``weight``: a Weight, or a Target): strictly ascending base-order flat
        indices r * cols + c and their ``delta`` (CPU; ``len(indices)`` elements, [count] or [1, count], finite;
        copied to f32).

        ``base`` is the full base weight (base order) for the entries' fingerprint, or None (never checked). No
        index may lie on a structured line of the same (layer, weight). Empty ``indices`` (with delta None)
        removes the entries. A failed call changes nothing.
        """
        res = self._live()
        self._check_unapplied("Adapter.set_sparse")
        layer = int32_arg(layer, "layer")
        weight = _weight_arg(weight)
        array = int64_array(indices, "indices")
        with Borrowed() as b:
            pd = b.pointer(delta, "delta") if len(array) else None
            pb = b.pointer(base, "base") if len(array) else None
            check(_api.s2ft_adapter_set_sparse(res.ptr, layer, int(weight), array if len(array) else None,
                                               len(array), pd, pb))

    def clear_sparse(self, layer, weight):
        """Removes the sparse entries of (layer, weight)."""
        self.set_sparse(layer, weight, [], None)

    def sparse(self, layer, weight):
        """The sparse entries of (layer, Weight ``weight``) as SparseEntries(indices, deltas, fingerprint).

        Empty (and fingerprint 0) when there are none. ``deltas`` is a NumPy f32 array.
        """
        import numpy  # only needed for the result

        res = self._live()
        layer = int32_arg(layer, "layer")
        weight = _weight_arg(weight)
        count = ctypes.c_int64()
        fingerprint = ctypes.c_uint64()
        check(_api.s2ft_adapter_sparse(res.ptr, layer, int(weight), None, None, 0, ctypes.byref(count),
                                       ctypes.byref(fingerprint)))
        n = count.value
        indices = (ctypes.c_int64 * n)()
        deltas = numpy.empty(n, numpy.float32)
        if n:
            check(_api.s2ft_adapter_sparse(res.ptr, layer, int(weight), indices,
                                           deltas.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n,
                                           ctypes.byref(count), ctypes.byref(fingerprint)))
        return SparseEntries(list(indices), deltas, fingerprint.value)

    def sparse_info(self):
        """SparseInfo(weights, entries): the Weights with sparse entries in some layer and the entries in all."""
        res = self._live()
        mask = ctypes.c_uint32()
        entries = ctypes.c_int64()
        check(_api.s2ft_adapter_sparse_info(res.ptr, ctypes.byref(mask), ctypes.byref(entries)))
        return SparseInfo(tuple(w for w in Weight if mask.value & w.bit), entries.value)

    def set_low_rank(self, layer, weight, b, a, base=None):
        """Sets the low-rank entry of (layer, ``weight``: a Weight, or a Target): the delta b @ a of the whole
        base-order weight [rows, cols], kept as its factors b [rows, k] and a [k, cols] (CPU; f32, f16 or bf16,
        any strides; k >= 1, every value finite; copied to f32).

        A low-rank entry changes the whole weight, so the (layer, weight) may hold no structured entry and no
        sparse entries beside it (InvalidArgumentError; set() and set_sparse() refuse while it is there).
        ``base`` is the full base weight (base order) for the entry's fingerprint, or None (never checked).
        ``b`` and ``a`` both None remove the entry (see clear_low_rank()); only one of them None is an
        InvalidArgumentError. A failed call changes nothing.
        """
        res = self._live()
        self._check_unapplied("Adapter.set_low_rank")
        layer = int32_arg(layer, "layer")
        weight = _weight_arg(weight)
        with Borrowed() as borrowed:
            pb = borrowed.pointer(b, "b")
            pa = borrowed.pointer(a, "a")
            pbase = borrowed.pointer(base, "base") if (b is not None or a is not None) else None
            check(_api.s2ft_adapter_set_low_rank(res.ptr, layer, int(weight), pb, pa, pbase))

    def clear_low_rank(self, layer, weight):
        """Removes the low-rank entry of (layer, weight) (none is not an error)."""
        self.set_low_rank(layer, weight, None, None)

    def set_sorsa(self, layer, weight, u0, s0, vt0, u, s, vt, base=None):
        """Sets the low-rank entry of (layer, weight) to what SORSA training changed.

        sorsa_init() split the weight into a residual and ``u0``, ``s0``, ``vt0``; training made them ``u``,
        ``s``, ``vt`` (all of rank r): delta = u diag(s) vt - u0 diag(s0) vt0, stored as
        b = [u diag(s) | -u0 diag(s0)] ([rows, 2r], each product rounded once to f32) and a = [vt ; vt0]
        ([2r, cols]), so low_rank() reads back rank 2r and the entry exports to PEFT as LoRA of rank 2r.
        u, u0 are [rows, r], s, s0 [r] or [1, r], vt, vt0 [r, cols], all f32 on the CPU (ShapeError for
        factors of different ranks, DtypeError for factors that are not f32). ``base`` (may be None) is the
        weight as it was before sorsa_init() (the base the adapter applies to), for the fingerprint. Errors
        otherwise as set_low_rank(); a failed call changes nothing.
        """
        res = self._live()
        self._check_unapplied("Adapter.set_sorsa")
        layer = int32_arg(layer, "layer")
        weight = _weight_arg(weight)
        with Borrowed() as b:
            check(_api.s2ft_adapter_set_sorsa(res.ptr, layer, int(weight), b.pointer(u0, "u0"), b.pointer(s0, "s0"),
                                              b.pointer(vt0, "vt0"), b.pointer(u, "u"), b.pointer(s, "s"),
                                              b.pointer(vt, "vt"), b.pointer(base, "base")))

    def low_rank(self, layer, weight):
        """The low-rank entry of (layer, Weight ``weight``) as LowRankEntry(b, a, fingerprint), or None when there
        is none.

        ``b`` [rows, k] and ``a`` [k, cols] are new NumPy f32 arrays (copies: changing them changes nothing).
        """
        import numpy  # only needed for the result

        res = self._live()
        layer = int32_arg(layer, "layer")
        weight = _weight_arg(weight)
        rank = ctypes.c_int64()
        fingerprint = ctypes.c_uint64()
        check(_api.s2ft_adapter_low_rank(res.ptr, layer, int(weight), ctypes.byref(rank), None, None, None))
        k = rank.value
        if k == 0:
            return None
        rows, cols = self.shape.weight_shape(weight)
        b_out = numpy.empty((rows, k), numpy.float32)
        a_out = numpy.empty((k, cols), numpy.float32)
        with Borrowed() as b:
            check(_api.s2ft_adapter_low_rank(res.ptr, layer, int(weight), ctypes.byref(rank),
                                             b.pointer(b_out, "b", writable=True), b.pointer(a_out, "a", writable=True),
                                             ctypes.byref(fingerprint)))
        return LowRankEntry(b_out, a_out, fingerprint.value)

    def low_rank_info(self):
        """LowRankInfo(weights, entries): the Weights with a low-rank entry in some layer and the number of low-rank
        entries (layer, weight) in all."""
        res = self._live()
        mask = ctypes.c_uint32()
        entries = ctypes.c_int64()
        check(_api.s2ft_adapter_low_rank_info(res.ptr, ctypes.byref(mask), ctypes.byref(entries)))
        return LowRankInfo(tuple(w for w in Weight if mask.value & w.bit), entries.value)

    @property
    def metadata(self):
        """The provenance metadata, a dict-like AdapterMetadata."""
        return AdapterMetadata(self)

    def save(self, path):
        """Saves the adapter as safetensors (temporary name, then renamed)."""
        res = self._live()
        check(_api.s2ft_adapter_save(res.ptr, path_arg(path, "path")))

    def export_peft(self, out_dir, *, base_model_name_or_path=None, scale=None):
        """Writes the adapter as an exact Hugging Face PEFT LoRA adapter folder (per-module ranks).

        ``scale`` None means the adapter's default scale.
        """
        res = self._live()
        opts = _capi.s2ft_peft_export_options()
        check(_api.s2ft_peft_export_options_init(ctypes.byref(opts), _capi.S2FT_PEFT_EXPORT_OPTIONS_VERSION))
        if base_model_name_or_path is not None:
            opts.base_model_name_or_path = str_arg(base_model_name_or_path, "base_model_name_or_path")
        if scale is not None:
            opts.scale = float_arg(scale, "scale")
        check(_api.s2ft_adapter_export_peft(res.ptr, path_arg(out_dir, "out_dir"), ctypes.byref(opts)))

    def upload(self, ctx):
        """Copies the adapter to a CUDA context's device now (no-op on the CPU); keeps the context alive."""
        res = self._live()
        ctx_res = context_arg(ctx)
        check(_api.s2ft_adapter_upload(ctx_res.ptr, res.ptr))
        if dlpack_stream(ctx_res) is not None:  # a CUDA context
            res.borrow(ctx_res)  # the device copy lives until the adapter is destroyed

    def _ptr_matches(self, address):
        """True when this open adapter's handle is ``address``."""
        res = getattr(self, "_res", None)
        return res is not None and res.ptr == address


def forward_mixed(ctx, layer, target, x, w, y, adapters, offsets, segment_adapter, *, scales=None, perm=None):
    """One linear layer for a batch whose row segments use different adapters, nothing merged.

    y = x W^T, then for segment j (rows offsets[j]:offsets[j+1]) with
    a = segment_adapter[j] >= 0 the adapter's delta is added (-1: none).
    ``w`` is the base weight of ``target`` in ``layer`` (in perm's permuted
    order when a Selection ``perm`` is given). ``adapters`` may hold None;
    ``scales`` None (or None/NaN entries) means default scales. Returns y.
    """
    from .selection import Selection

    return _forward_mixed(context_arg(ctx), layer, target, x, w, y, adapters, offsets, segment_adapter, scales,
                          live(perm, Selection, "perm", optional=True))


def _forward_mixed(res, layer, target, x, w, y, adapters, offsets, segment_adapter, scales, perm_res):
    """forward_mixed on a context and a permutation given by their Resources."""
    layer = int32_arg(layer, "layer")
    target = enum_arg(target, Target, "target")
    adapters = list(adapters)
    resources = [live(a, Adapter, "adapters[%d]" % i, optional=True) for i, a in enumerate(adapters)]
    pointers = (ctypes.c_void_p * max(len(adapters), 1))(*[r.ptr if r else None for r in resources])
    raw_scales = None
    if scales is not None:
        scales = list(scales)
        if len(scales) != len(adapters):
            raise invalid("forward_mixed: %d scales for %d adapters" % (len(scales), len(adapters)))
        raw_scales = (ctypes.c_double * len(scales))(*[_scale_arg(s, "scales[%d]" % i) for i, s in enumerate(scales)])
    raw_offsets = int64_array(offsets, "offsets")
    seg = list(segment_adapter.tolist() if hasattr(segment_adapter, "tolist") else segment_adapter)
    raw_segments = (ctypes.c_int32 * max(len(seg), 1))(*[int32_arg(s, "segment_adapter[%d]" % i) for i, s in enumerate(seg)])
    if len(raw_offsets) != len(seg) + 1:
        raise invalid("forward_mixed: offsets has %d entries; expected len(segment_adapter) + 1 = %d"
                      % (len(raw_offsets), len(seg) + 1))
    with borrow(res) as b:
        check(_api.s2ft_adapter_forward_mixed(
            res.ptr, layer, int(target), b.pointer(x, "x"), b.pointer(w, "w"), perm_res.ptr if perm_res else None,
            pointers, raw_scales, len(adapters), raw_offsets, raw_segments, len(seg),
            b.pointer(y, "y", writable=True)))
    if dlpack_stream(res) is not None:
        for r in resources:
            if r is not None:
                r.borrow(res)  # their device copies live until the adapters are destroyed
    return y
