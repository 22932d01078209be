"""Selection: which units each layer trains, and the co-permutation that brings them to the front."""

import ctypes

from . import _capi
from ._convert import enum_arg, float_arg, int64_array, int32_arg, int_arg, path_arg
from ._handle import Handle, live
from ._library import api as _api
from .context import context_arg
from .enums import Allocation, HeadGranularity, Order, PermKind, Strategy, Target
from .errors import check, invalid
from .shape import ModelShape, shape_arg


def targets_mask(targets, name="targets"):
    """A target mask from an int mask, a Target, or an iterable of Targets (or names)."""
    if isinstance(targets, Target):
        return targets.bit
    if isinstance(targets, int) and not isinstance(targets, bool):
        if targets < 0 or targets >= 1 << _capi.S2FT_NUM_TARGETS:
            raise invalid("%s mask is %d; expected bits of Target values" % (name, targets))
        return targets
    if isinstance(targets, str):
        return enum_arg(targets, Target, name).bit
    try:
        items = list(targets)
    except TypeError:
        raise invalid("%s is %r; expected Targets or a mask" % (name, targets)) from None
    mask = 0
    for item in items:
        mask |= enum_arg(item, Target, name).bit
    return mask


def targets_of_mask(mask):
    """The Targets of a mask, in Target order, as a tuple."""
    return tuple(t for t in Target if mask & t.bit)


class Selection(Handle):
    """The units trained in every layer and their co-permutation (immutable; s2ft_selection).

    Made by :func:`select`, :meth:`create` (explicit units) or :meth:`load`.
    Indices are lists of ints; units are query heads (O; KV groups under
    HeadGranularity.BY_GROUP when given to create), KV heads (V) and FFN
    channels (DOWN, UP); lines are weight rows/columns.
    """

    _what = "Selection"

    def __init__(self, _raw=None):
        """Not for direct use: see select(), Selection.create() and Selection.load()."""
        if _raw is None:
            raise invalid("make a Selection with s2ft.select(), Selection.create() or Selection.load()")
        self._init_resource(_raw, _api.s2ft_selection_destroy)

    @classmethod
    def create(cls, shape, units, head_granularity=HeadGranularity.BY_GROUP):
        """A selection from explicit base-order units: ``units`` maps Target -> per-layer index lists.

        Every layer lists the same number of units for a target (an
        [n_layers, k] nested list or array); a target left out is not
        trained. Under BY_GROUP the O units are KV groups.
        """
        raw_shape = shape_arg(shape)
        granularity = enum_arg(head_granularity, HeadGranularity, "head_granularity")
        if not hasattr(units, "items"):
            raise invalid("units is %r; expected a dict Target -> per-layer index lists" % (units,))
        arrays = [None] * _capi.S2FT_NUM_TARGETS
        counts = (ctypes.c_int64 * _capi.S2FT_NUM_TARGETS)()
        for key, per_layer in units.items():
            target = enum_arg(key, Target, "units key")
            if hasattr(per_layer, "tolist"):
                per_layer = per_layer.tolist()
            rows = list(per_layer)
            if len(rows) != shape.n_layers:
                raise invalid("units[%s] has %d layers; the shape has %d" % (target.name, len(rows), shape.n_layers))
            k = len(rows[0]) if rows else 0
            flat = []
            for layer, row in enumerate(rows):
                row = list(row)
                if len(row) != k:
                    raise invalid("units[%s] lists %d units in layer %d and %d in layer 0; every layer needs the same count"
                                  % (target.name, len(row), layer, k))
                flat.extend(row)
            arrays[target] = int64_array(flat, "units[%s]" % target.name)
            counts[target] = k
        pointers = (ctypes.POINTER(ctypes.c_int64) * _capi.S2FT_NUM_TARGETS)(
            *[ctypes.cast(a, ctypes.POINTER(ctypes.c_int64)) if a is not None else None for a in arrays]
        )
        raw = ctypes.c_void_p()
        check(_api.s2ft_selection_create(ctypes.byref(raw_shape), int(granularity), pointers, counts,
                                         ctypes.byref(raw)))
        return cls(raw.value)

    @classmethod
    def load(cls, path):
        """Loads a selection saved by save() (a versioned JSON file, checked as hostile input)."""
        raw = ctypes.c_void_p()
        check(_api.s2ft_selection_load(path_arg(path, "path"), ctypes.byref(raw)))
        return cls(raw.value)

    def save(self, path):
        """Saves the selection as versioned JSON (written to a temporary name, then renamed)."""
        res = self._live()
        check(_api.s2ft_selection_save(res.ptr, path_arg(path, "path")))

    @property
    def shape(self):
        """The ModelShape the selection was made for."""
        res = self._live()
        out = _capi.s2ft_model_shape()
        check(_api.s2ft_selection_shape(res.ptr, ctypes.byref(out)))
        return ModelShape.from_c(out)

    @property
    def targets(self):
        """The Targets the selection trains, as a tuple."""
        res = self._live()
        out = ctypes.c_uint32()
        check(_api.s2ft_selection_targets(res.ptr, ctypes.byref(out)))
        return targets_of_mask(out.value)

    def indices(self, layer, target, *, lines=False, permuted=False):
        """The selected indices of (layer, target), ascending: units (default) or weight lines, base or permuted order."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        flags = (_capi.S2FT_INDEX_LINES if lines else _capi.S2FT_INDEX_UNITS) | (
            _capi.S2FT_INDEX_PERMUTED if permuted else _capi.S2FT_INDEX_BASE)
        n = ctypes.c_int64()
        check(_api.s2ft_selection_indices(res.ptr, layer, int(target), flags, None, 0, ctypes.byref(n)))
        out = (ctypes.c_int64 * n.value)()
        check(_api.s2ft_selection_indices(res.ptr, layer, int(target), flags, out, n.value, ctypes.byref(n)))
        return list(out[: n.value])

    def range(self, layer, target):
        """(begin, count) of the contiguous permuted lines of (layer, target); StateError when not contiguous."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        target = enum_arg(target, Target, "target")
        begin, count = ctypes.c_int64(), ctypes.c_int64()
        check(_api.s2ft_selection_range(res.ptr, layer, int(target), ctypes.byref(begin), ctypes.byref(count)))
        return begin.value, count.value

    def permutation(self, layer, kind):
        """The co-permutation of ``layer`` (PermKind): out[p] is the base index of the unit at position p."""
        res = self._live()
        layer = int32_arg(layer, "layer")
        kind = enum_arg(kind, PermKind, "kind")
        n = ctypes.c_int64()
        check(_api.s2ft_selection_permutation(res.ptr, layer, int(kind), None, 0, ctypes.byref(n)))
        out = (ctypes.c_int64 * n.value)()
        check(_api.s2ft_selection_permutation(res.ptr, layer, int(kind), out, n.value, ctypes.byref(n)))
        return list(out[: n.value])


def select(ctx, shape, stats=None, *, targets=None, strategy=None, order=None, allocation=None,
           head_granularity=None, seed=None, ratio=None, count=None):
    """Chooses the units to train in every layer; returns a Selection.

    Options left None keep the library's defaults (s2ft_select_options_init:
    targets O and DOWN, Strategy.RANDOM, Order.LARGEST,
    Allocation.PER_LAYER, HeadGranularity.BY_GROUP, seed 0, ratio O 0.05
    and DOWN 0.02). ``targets``: Targets or a mask. ``ratio`` and ``count``
    map Target -> budget, ratio in (0, 1] or an absolute count; giving a
    target a count (and no ratio) clears its default ratio. ``stats`` (a
    Statistics) is needed by every strategy but RANDOM.
    """
    from .statistics import Statistics

    res = context_arg(ctx)
    raw_shape = shape_arg(shape)
    stats_res = live(stats, Statistics, "stats", optional=True)
    opts = _capi.s2ft_select_options()
    check(_api.s2ft_select_options_init(ctypes.byref(opts), _capi.S2FT_SELECT_OPTIONS_VERSION))
    if targets is not None:
        opts.targets = targets_mask(targets)
    if strategy is not None:
        opts.strategy = int(enum_arg(strategy, Strategy, "strategy"))
    if order is not None:
        opts.order = int(enum_arg(order, Order, "order"))
    if allocation is not None:
        opts.allocation = int(enum_arg(allocation, Allocation, "allocation"))
    if head_granularity is not None:
        opts.head_granularity = int(enum_arg(head_granularity, HeadGranularity, "head_granularity"))
    if seed is not None:
        opts.seed = int_arg(seed, "seed", unsigned=True)
    ratio = _budget(ratio, "ratio", float_arg)
    count = _budget(count, "count", int_arg)
    for target, value in count.items():
        opts.count[target] = value
        if target not in ratio:
            opts.ratio[target] = 0.0
    for target, value in ratio.items():
        opts.ratio[target] = value
    raw = ctypes.c_void_p()
    check(_api.s2ft_select(res.ptr, ctypes.byref(raw_shape), ctypes.byref(opts),
                           stats_res.ptr if stats_res else None, ctypes.byref(raw)))
    return Selection(raw.value)


def _budget(mapping, name, convert):
    """A dict Target -> value of a ratio/count argument (None: empty)."""
    if mapping is None:
        return {}
    if not hasattr(mapping, "items"):
        raise invalid("%s is %r; expected a dict Target -> value" % (name, mapping))
    return {enum_arg(k, Target, name + " key"): convert(v, "%s[%s]" % (name, k)) for k, v in mapping.items()}
