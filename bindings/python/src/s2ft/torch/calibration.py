"""Statistics for selection from a transformers model: weights, and hooks over calibration batches.

What libs2ft's statistics take (s2ft_statistics_*), all in base order:
- weight: each targeted weight (o/v/down/up_proj) as it is;
- activation: the inputs x [T, in] of o_proj (Target.O) and down_proj
  (Target.DOWN), sum over tokens of x[t, c]^2 per input column (V and UP
  units reuse them);
- gradient: per targeted weight its input x [T, in] and output gradient
  dy [T, out] of one batch (the library forms dW = dy^T x in scratch).
Tokens where a batch's ``attention_mask`` is 0 are left out.
"""

import collections.abc
import contextlib

import torch

from ..enums import Strategy, Target
from ..errors import invalid
from ..statistics import Statistics
from . import _runtime
from .architectures import TARGET_MODULES, get_module


def model_inputs(batch, device):
    """The keyword arguments of a calibration batch: a tensor of input_ids, or a mapping (BatchEncoding, dict)."""
    if isinstance(batch, torch.Tensor):
        batch = {"input_ids": batch}
    elif not isinstance(batch, collections.abc.Mapping):
        raise invalid("a calibration batch is a %s; expected a tensor of input_ids or a mapping of model inputs "
                      "(input_ids, attention_mask, labels, ...)" % type(batch).__name__)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _kept_tokens(inputs):
    """The flattened attention mask of a batch as bools, or None."""
    mask = inputs.get("attention_mask")
    if not isinstance(mask, torch.Tensor):
        return None
    return mask.reshape(-1).bool()


def _rows(t, width, keep):
    """``t`` as [T, width], without the rows ``keep`` says to drop (when it fits)."""
    t = t.detach().reshape(-1, width)
    if keep is not None and keep.numel() == t.shape[0]:
        t = t[keep.to(t.device)]
    return t


@contextlib.contextmanager
def _hooks(handles):
    """Removes the hooks in ``handles`` on exit."""
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _frozen_eval(model, train=False):
    """Every parameter frozen and the model in eval (or train) mode; restores both on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    mode = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.train(train)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(mode)


def _put(stats, device, t):
    """``t`` on the statistics' device (a copy only when it lives elsewhere)."""
    return t if t.device == device else t.to(device)


def add_weights(stats, device, layers, targets):
    """Records every targeted weight (base order)."""
    for i, layer in enumerate(layers):
        for target in targets:
            w = get_module(layer, TARGET_MODULES[target]).weight.detach()
            stats.add_weight(i, target, _runtime.view(_put(stats, device, w), "weight"))


def add_activations(stats, device, model, layers, calibration):
    """Runs the calibration batches (no grad, eval mode) and accumulates the inputs of o_proj and down_proj."""
    current = {"keep": None}

    def hook(layer, target):
        def record(module, args):
            x = _rows(args[0], module.in_features, current["keep"])
            stats.add_activation(layer, target, _runtime.view(_put(stats, device, x).contiguous(), "x"))
        return record

    handles = []
    for i, layer in enumerate(layers):
        for target in (Target.O, Target.DOWN):
            handles.append(get_module(layer, TARGET_MODULES[target]).register_forward_pre_hook(hook(i, target)))
    count = 0
    with _hooks(handles), _frozen_eval(model), torch.no_grad():
        for batch in calibration:
            inputs = model_inputs(batch, _first_device(model))
            inputs.setdefault("use_cache", False)
            current["keep"] = _kept_tokens(inputs)
            model(**inputs)
            count += 1
    if count == 0:
        raise invalid("calibration gave no batches")


def _default_loss(model, inputs):
    """The causal LM loss of a batch, with labels = input_ids unless the batch has labels."""
    if "labels" not in inputs:
        inputs = dict(inputs, labels=inputs["input_ids"])
    out = model(**inputs)
    loss = out.loss if hasattr(out, "loss") else out[0]
    if loss is None:
        raise invalid("the model returned no loss for a calibration batch; pass loss_fn")
    return loss


def add_gradients(stats, device, model, layers, targets, calibration, loss_fn=None):
    """Back-propagates each calibration batch's loss and accumulates every targeted weight's gradient norms.

    No parameter gradient is formed: the parameters are frozen and the
    graph starts at the input embeddings' output.
    """
    current = {"keep": None}

    def hook(layer, target):
        def record(module, args, output):
            if not output.requires_grad:
                return
            x = _rows(args[0], module.in_features, current["keep"])
            keep = current["keep"]

            def on_grad(dy):
                dy = _rows(dy, module.out_features, keep)
                stats.add_gradient(layer, target, _runtime.view(_put(stats, device, x).contiguous(), "x"),
                                   _runtime.view(_put(stats, device, dy).contiguous(), "dy"))
            output.register_hook(on_grad)
        return record

    def start_graph(module, args, output):
        return output.detach().requires_grad_(True)

    embeddings = model.get_input_embeddings()
    handles = [embeddings.register_forward_hook(start_graph)]
    for i, layer in enumerate(layers):
        for target in targets:
            handles.append(get_module(layer, TARGET_MODULES[target]).register_forward_hook(hook(i, target)))
    count = 0
    with _hooks(handles), _frozen_eval(model), torch.enable_grad():
        for batch in calibration:
            inputs = model_inputs(batch, _first_device(model))
            inputs.setdefault("use_cache", False)
            current["keep"] = _kept_tokens(inputs)
            loss = (loss_fn or _default_loss)(model, inputs)
            loss.backward()
            count += 1
    if count == 0:
        raise invalid("calibration gave no batches")


def _first_device(model):
    """Where the model's input embeddings live (calibration inputs go there)."""
    return model.get_input_embeddings().weight.device


def statistics_device(layers):
    """The device of every trainable projection, or the CPU when they are spread over several."""
    devices = {get_module(layer, path).weight.device for layer in layers for path in TARGET_MODULES.values()}
    return devices.pop() if len(devices) == 1 else torch.device("cpu")


def collect(model, layers, shape, strategy, targets, calibration, loss_fn=None):
    """The Statistics ``strategy`` scores by (None for RANDOM), gathered from ``model`` in base order."""
    if strategy == Strategy.RANDOM:
        return None
    needs_batches = strategy in (Strategy.ACTIVATION, Strategy.WEIGHT_ACT, Strategy.GRADIENT)
    if needs_batches and calibration is None:
        raise invalid("strategy %s scores units by %s over calibration batches: pass calibration=[batch, ...]"
                      % (strategy.name.lower(), "gradients" if strategy == Strategy.GRADIENT else "activations"))
    device = statistics_device(layers)
    stats = Statistics(_runtime.context(device), shape)
    if strategy in (Strategy.WEIGHT, Strategy.WEIGHT_ACT):
        add_weights(stats, device, layers, targets)
    if strategy in (Strategy.ACTIVATION, Strategy.WEIGHT_ACT):
        add_activations(stats, device, model, layers, calibration)
    if strategy == Strategy.GRADIENT:
        add_gradients(stats, device, model, layers, targets, calibration, loss_fn)
    return stats
