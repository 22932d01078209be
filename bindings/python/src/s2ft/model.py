"""Model: base weights that adapters are applied to, removed from and switched on, in place (s2ft_model)."""

import ctypes
import math

from . import _capi
from ._convert import enum_arg, int32_arg, path_arg
from ._handle import Handle, live
from ._library import api as _api
from .adapter import Adapter, _forward_mixed, _scale_arg
from .context import borrow, context_arg
from .enums import Target
from .errors import check, invalid, state_error
from .shape import shape_arg
from .tensor import TensorView
from .weights import WEIGHT_NAMES, LayerWeights, fill_layer_weights


class _BorrowedResource:
    """The handle of an adapter the model owns (from apply_files): usable only while the model still has it applied."""

    __slots__ = ("_ptr", "_model_res", "keep", "attached")

    def __init__(self, ptr, model_res):
        """Refers to adapter ``ptr`` owned by the model of ``model_res``."""
        self._ptr = ptr
        self._model_res = model_res
        self.keep = []
        self.attached = {}

    @property
    def ptr(self):
        """The adapter handle; StateError once the model no longer holds it."""
        if _applied_pointer(self._model_res) != self._ptr:
            raise state_error("the adapter loaded by Model.apply_files was removed or replaced")
        return self._ptr

    def borrow(self, obj):
        """Keeps ``obj`` alive with the model."""
        self.keep.append(obj)


def _applied_pointer(model_res):
    """The address of the adapter applied to the model (None when none or the model is gone)."""
    if model_res.ptr is None:
        return None
    adapter = ctypes.c_void_p()
    check(_api.s2ft_model_applied(model_res.ptr, ctypes.byref(adapter), None))
    return adapter.value


def _flags(force):
    """The apply flags for ``force``."""
    return _capi.S2FT_APPLY_FORCE if force else 0


class Model(Handle):
    """A model over the caller's base weights (borrowed, edited in place); at most one adapter applied.

    ``Model(ctx, shape, layers, perm=None)``: ``layers`` has one LayerWeights
    per layer (any of the seven weights; every weight an adapter touches
    must be given: o, v, down and up for structured entries, any weight for
    sparse entries); ``perm`` is the Selection whose permuted order
    the weights are in. The model keeps the weights (their memory must stay
    in place), its context, its checkpoint and the applied adapter alive
    until closed. Closing leaves an applied adapter merged (remove() first
    to restore the base).
    """

    _what = "Model"

    def __init__(self, ctx, shape, layers, perm=None, *, _raw=None, _keep=()):
        """Creates a model over ``layers`` (see the class documentation)."""
        from .selection import Selection

        if _raw is not None:
            self._init_resource(_raw, _api.s2ft_model_destroy, _keep)
            return
        ctx_res = context_arg(ctx)
        raw_shape = shape_arg(shape)
        perm_res = live(perm, Selection, "perm", optional=True)
        layers = list(layers)
        with borrow(ctx_res) as b:
            raw_layers = (_capi.s2ft_layer_weights * max(len(layers), 1))(
                *[fill_layer_weights(b, w, "layers[%d]" % i, True) for i, w in enumerate(layers)])
            if len(layers) != shape.n_layers:
                raise invalid("Model: %d layers given; the shape has %d" % (len(layers), shape.n_layers))
            raw = ctypes.c_void_p()
            check(_api.s2ft_model_create(ctx_res.ptr, ctypes.byref(raw_shape), raw_layers,
                                         perm_res.ptr if perm_res else None, ctypes.byref(raw)))
            # The model keeps the descriptors' pointers and the memory: hold both.
            self._init_resource(raw.value, _api.s2ft_model_destroy, [ctx_res, raw_layers] + b.keep())
        self._res.attached.update(context=ctx_res, perm=perm_res)

    @classmethod
    def from_checkpoint(cls, ctx, checkpoint, shape=None, perm=None):
        """A model over a Checkpoint's seven projection weights per layer (copy-on-write views into its files; CPU context).

        Applying an adapter changes the checkpoint's contents in this
        process, never the files; Checkpoint.write() then writes the merged
        model. ``shape`` None means the checkpoint's.
        """
        from .checkpoint import Checkpoint
        from .selection import Selection

        ctx_res = context_arg(ctx)
        ckpt_res = live(checkpoint, Checkpoint, "checkpoint")
        raw_shape = shape_arg(shape) if shape is not None else None
        perm_res = live(perm, Selection, "perm", optional=True)
        raw = ctypes.c_void_p()
        check(_api.s2ft_model_from_checkpoint(ctx_res.ptr, ckpt_res.ptr,
                                              ctypes.byref(raw_shape) if raw_shape is not None else None,
                                              perm_res.ptr if perm_res else None, ctypes.byref(raw)))
        model = cls(None, None, None, _raw=raw.value, _keep=[ctx_res, ckpt_res])
        model._res.attached.update(context=ctx_res, perm=perm_res)
        return model

    def _adapter_res(self, adapter):
        """The Resource of an Adapter argument."""
        return live(adapter, Adapter, "adapter")

    def _applied_adapter(self):
        """The Adapter object applied through apply/switch (None when none, after apply_files, or closed)."""
        res = getattr(self, "_res", None)
        return res.attached.get("adapter") if res is not None else None

    def _set_applied(self, adapter, adapter_res):
        """Records (and keeps alive, with its handle) the adapter now applied; None after remove()."""
        res = self._res
        previous = res.attached.get("adapter")
        res.attached["adapter"] = adapter
        res.attached["adapter_res"] = adapter_res
        if previous is not None and previous is not adapter:
            previous._models.discard(self)
        if adapter is not None:
            adapter._models.add(self)

    def apply(self, adapter, scale=None, *, force=False):
        """Merges ``adapter`` into the weights at ``scale`` (None: its default), saving the displaced lines.

        FormatError when the base fingerprints differ (``force`` applies
        anyway); StateError when an adapter is already applied (use switch).
        """
        res = self._live()
        adapter_res = self._adapter_res(adapter)
        check(_api.s2ft_adapter_apply(res.ptr, adapter_res.ptr, _scale_arg(scale), _flags(force)))
        self._set_applied(adapter, adapter_res)

    def remove(self):
        """Restores the lines the applied adapter displaced, bit-exactly; StateError when none is applied."""
        res = self._live()
        check(_api.s2ft_adapter_remove(res.ptr))
        self._set_applied(None, None)

    def switch(self, adapter, scale=None, *, force=False):
        """Replaces the applied adapter (if any) by ``adapter``, touching only the union of their lines."""
        res = self._live()
        adapter_res = self._adapter_res(adapter)
        check(_api.s2ft_adapter_switch(res.ptr, adapter_res.ptr, _scale_arg(scale), _flags(force)))
        self._set_applied(adapter, adapter_res)

    def apply_files(self, paths, weights=None, *, force=False):
        """Loads adapter files, fuses them when several (``weights``: None for default scales) and switches to the result.

        The model owns the loaded adapter; applied() returns a view of it
        that is valid while it stays applied. On error the model is unchanged.
        """
        res = self._live()
        encoded = [path_arg(p, "paths[%d]" % i) for i, p in enumerate(paths)]
        raw_paths = (ctypes.c_char_p * max(len(encoded), 1))(*encoded)
        raw_weights = None
        if weights is not None:
            weights = [_scale_arg(w, "weights[%d]" % i) for i, w in enumerate(weights)]
            if len(weights) != len(encoded):
                raise invalid("apply_files: %d weights for %d paths" % (len(weights), len(encoded)))
            raw_weights = (ctypes.c_double * len(weights))(*weights)
        check(_api.s2ft_model_apply_files(res.ptr, raw_paths, raw_weights, len(encoded), _flags(force)))
        self._set_applied(None, None)

    def applied(self):
        """(adapter, scale) of the applied adapter, or (None, nan) when none.

        The adapter is the object passed to apply/switch, or, after
        apply_files, a view of the model's own adapter that raises
        StateError once it is removed or replaced.
        """
        res = self._live()
        pointer = ctypes.c_void_p()
        scale = ctypes.c_double()
        check(_api.s2ft_model_applied(res.ptr, ctypes.byref(pointer), ctypes.byref(scale)))
        if not pointer.value:
            return None, math.nan
        mine = self._applied_adapter()
        if mine is not None and mine._ptr_matches(pointer.value):
            return mine, scale.value
        view = Adapter.__new__(Adapter)
        view._models = set()
        view._res = _BorrowedResource(pointer.value, res)
        return view, scale.value

    def forward_mixed(self, layer, target, x, y, adapters, offsets, segment_adapter, *, scales=None):
        """forward_mixed() over this model's weight of (layer, target), in its order (its ``perm``); returns y.

        Serves a batch whose row segments use different adapters on the base
        weights the model holds (apply nothing to the model meanwhile, or
        the applied adapter is part of the base).
        """
        res = self._live()
        target = enum_arg(target, Target, "target")
        weight = getattr(self.layer(layer), target.name.lower())
        if weight is None:
            raise invalid("Model.forward_mixed: the model holds no %s weight in layer %d" % (target.name, layer))
        return _forward_mixed(res.attached["context"], layer, target, x, weight, y, adapters, offsets,
                              segment_adapter, scales, res.attached["perm"])

    def layer(self, index):
        """The weights of layer ``index`` as the model holds them (TensorViews; None for weights it was made without).

        The views keep the model (and so its weights) alive.
        """
        res = self._live()
        index = int32_arg(index, "layer")
        raw = _capi.s2ft_layer_weights()
        check(_api.s2ft_model_layer(res.ptr, index, ctypes.byref(raw)))
        views = {}
        for name in WEIGHT_NAMES:
            pointer = getattr(raw, name)
            if pointer:
                desc = _capi.s2ft_tensor.from_buffer_copy(pointer.contents)
                views[name] = TensorView(desc, owner=res)
        return LayerWeights(**views)
