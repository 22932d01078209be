"""Optimizer: AdamW, SGD or SM3 over trained slices and sparse entries only (s2ft_optimizer)."""

import ctypes

from . import _capi
from ._convert import enum_arg, float_arg, path_arg
from ._handle import Handle
from ._library import api as _api
from .context import borrow, context_arg
from .enums import OptimizerKind
from .errors import check, invalid
from .partial import _slice_arg
from .sparse_train import SparseSet
from ._handle import live

_OPTION_FIELDS = ("beta1", "beta2", "eps", "weight_decay", "momentum", "max_grad_norm")


class Optimizer(Handle):
    """An optimizer whose state covers the trained slices and entries only.

    AdamW keeps two moments, SGD a momentum buffer, SM3 one accumulator per
    row and column (and an average of updates when momentum > 0).
    Options left None keep the library's defaults (s2ft_optimizer_options_init:
    AdamW, beta1 0.9, beta2 0.999, eps 1e-8, no weight decay, no momentum,
    no Nesterov, no clipping, no per-entry age bias correction). Keeps its
    context alive, and every registered weight (the library updates that
    memory in place) until closed.
    """

    _what = "Optimizer"

    def __init__(self, ctx, kind=None, *, beta1=None, beta2=None, eps=None, weight_decay=None, momentum=None,
                 nesterov=None, max_grad_norm=None, age_bias_correction=None):
        """Creates an optimizer with no parameters on ``ctx``."""
        ctx_res = context_arg(ctx)
        opts = _capi.s2ft_optimizer_options()
        check(_api.s2ft_optimizer_options_init(ctypes.byref(opts), _capi.S2FT_OPTIMIZER_OPTIONS_VERSION))
        if kind is not None:
            opts.kind = int(enum_arg(kind, OptimizerKind, "kind"))
        given = dict(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, momentum=momentum,
                     max_grad_norm=max_grad_norm)
        for field in _OPTION_FIELDS:
            if given[field] is not None:
                setattr(opts, field, float_arg(given[field], field))
        if nesterov is not None:
            opts.nesterov = 1 if nesterov else 0
        if age_bias_correction is not None:
            opts.age_bias_correction = 1 if age_bias_correction else 0
        raw = ctypes.c_void_p()
        check(_api.s2ft_optimizer_create(ctx_res.ptr, ctypes.byref(opts), ctypes.byref(raw)))
        self._init_resource(raw.value, _api.s2ft_optimizer_destroy, [ctx_res])
        self._res.attached["context"] = ctx_res
        self._res.attached["params"] = []

    def add_param(self, weight, slice):
        """Registers the trained ``slice`` of ``weight`` (updated in place by step()); returns its index.

        The optimizer keeps the weight alive and its memory must stay in
        place until the optimizer is closed. For f16/bf16 weights an f32
        master copy of the slice is made now.
        """
        res = self._live()
        raw_slice = _slice_arg(slice)
        index = ctypes.c_int64()
        with borrow(res.attached["context"]) as b:
            view = b.view(weight, "weight", writable=True)
            check(_api.s2ft_optimizer_add_param(res.ptr, ctypes.byref(view.desc), ctypes.byref(raw_slice),
                                                ctypes.byref(index)))
            res.keep.extend(b.keep())  # the library keeps the data pointer
        res.attached["params"].append(weight)
        return index.value

    def add_sparse(self, weight, set):
        """Registers the entries of ``weight`` at SparseSet ``set``'s indices; returns the parameter index.

        Its gradient in step() is [count] (what backward_sparse writes). The
        optimizer copies the indices, keeps the weight alive, and updates the
        weight in place.
        """
        res = self._live()
        set_res = live(set, SparseSet, "set")
        index = ctypes.c_int64()
        with borrow(res.attached["context"]) as b:
            view = b.view(weight, "weight", writable=True)
            check(_api.s2ft_optimizer_add_sparse(res.ptr, ctypes.byref(view.desc), set_res.ptr, ctypes.byref(index)))
            res.keep.extend(b.keep())  # the library keeps the data pointer
        res.attached["params"].append(weight)
        return index.value

    def sparse_reindex(self, index, set):
        """Moves sparse parameter ``index`` to SparseSet ``set``: shared entries keep their state, new ones start at zero."""
        res = self._live()
        set_res = live(set, SparseSet, "set")
        check(_api.s2ft_optimizer_sparse_reindex(res.ptr, int(index), set_res.ptr))

    @property
    def num_params(self):
        """The number of registered parameters."""
        return len(self._live().attached["params"])

    def param(self, index):
        """The weight registered as parameter ``index`` (the object passed to add_param)."""
        return self._live().attached["params"][index]

    def step(self, lr, grads, *, return_norm=False):
        """One step with learning rate ``lr``; grads[i] is parameter i's gradient ([out, k], [k, in] or sparse [count]).

        With max_grad_norm set the gradients are clipped by their global norm
        first (they are not modified). ``return_norm``: return that global
        norm before clipping (on CUDA this synchronises); otherwise None.
        """
        res = self._live()
        lr = float_arg(lr, "lr")
        grads = list(grads) if not isinstance(grads, (list, tuple)) else grads
        n_params = len(res.attached["params"])
        if len(grads) != n_params:
            raise invalid("step: %d gradients for %d parameters" % (len(grads), n_params))
        norm = ctypes.c_double()
        with borrow(res.attached["context"]) as b:
            array = (_capi.s2ft_tensor * len(grads))()
            for i, g in enumerate(grads):
                array[i] = b.view(g, "grads[%d]" % i).desc
            check(_api.s2ft_optimizer_step(res.ptr, lr, array, len(grads),
                                           ctypes.byref(norm) if return_norm else None))
        return norm.value if return_norm else None

    @property
    def step_count(self):
        """The number of steps taken (restored by load()); waits for the stream on CUDA."""
        res = self._live()
        out = ctypes.c_int64()
        check(_api.s2ft_optimizer_step_count(res.ptr, ctypes.byref(out)))
        return out.value

    def save(self, path):
        """Saves the state (options, step count, moments, f32 masters) as safetensors."""
        res = self._live()
        check(_api.s2ft_optimizer_save(res.ptr, path_arg(path, "path")))

    def load(self, path):
        """Restores state saved by save() into an optimizer with the same parameters; masters go back to the weights."""
        res = self._live()
        check(_api.s2ft_optimizer_load(res.ptr, path_arg(path, "path")))
