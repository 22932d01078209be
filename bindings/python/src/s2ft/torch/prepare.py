"""prepare() and unprepare(): turn a transformers LLaMA/Mistral/Qwen2 model into an S2FT model and back."""

import torch

from ..enums import Allocation, Direction, HeadGranularity, Order, PermKind, Strategy, Target
from ..errors import StateError, invalid, state_error
from ..partial import Slice
from ..selection import Selection, select
from ..weights import LayerWeights, permute as permute_layer
from . import _runtime, calibration as _calibration
from .architectures import PROJECTIONS, TARGET_MODULES, decoder_layers, get_module, model_shape, set_module, unwrap
from .linear import S2FTLinear
from .state import ATTRIBUTE, S2FTState, state_of

__all__ = ["prepare", "unprepare", "DEFAULT_RATIO"]

#: Budgets of targets given neither a ratio nor a count (the paper's LLaMA-2 setting for O and DOWN).
DEFAULT_RATIO = {Target.O: 0.05, Target.V: 0.05, Target.DOWN: 0.02, Target.UP: 0.02}

_STRATEGIES = {
    "random": Strategy.RANDOM, "weight": Strategy.WEIGHT, "activation": Strategy.ACTIVATION,
    "weight-activation": Strategy.WEIGHT_ACT, "weight_activation": Strategy.WEIGHT_ACT,
    "weight_act": Strategy.WEIGHT_ACT, "gradient": Strategy.GRADIENT,
}
_ORDERS = {"largest": Order.LARGEST, "smallest": Order.SMALLEST}
_ALLOCATIONS = {"per-layer": Allocation.PER_LAYER, "per_layer": Allocation.PER_LAYER, "global": Allocation.GLOBAL}
_HEADS = {"group": HeadGranularity.BY_GROUP, "by_group": HeadGranularity.BY_GROUP, "single": HeadGranularity.SINGLE}


def _choice(value, table, name, enum):
    """A member of ``enum`` from a name in ``table`` or a member itself."""
    if isinstance(value, enum):
        return value
    key = value.lower() if isinstance(value, str) else value
    if key not in table:
        raise invalid("%s is %r; expected one of %s" % (name, value, ", ".join(sorted(table))))
    return table[key]


def _target(value):
    """A Target from "o", "v", "down", "up" (or a Target)."""
    if isinstance(value, Target):
        return value
    names = {"o": Target.O, "o_proj": Target.O, "v": Target.V, "v_proj": Target.V, "down": Target.DOWN,
             "down_proj": Target.DOWN, "up": Target.UP, "up_proj": Target.UP}
    if not isinstance(value, str) or value.lower() not in names:
        raise invalid("target %r is not one of \"o\", \"v\", \"down\", \"up\"" % (value,))
    return names[value.lower()]


def _per_target(value, targets, name):
    """A dict Target -> value from one value for every target, or a mapping of target names."""
    if value is None:
        return {}
    if isinstance(value, dict):
        out = {_target(k): v for k, v in value.items()}
        extra = set(out) - set(targets)
        if extra:
            raise invalid("%s names %s, which targets does not include" % (name, sorted(t.name for t in extra)))
        return out
    return {t: value for t in targets}


def _budgets(targets, ratio, count):
    """(ratio, count) dicts with exactly one budget per target; defaults from DEFAULT_RATIO."""
    ratio = _per_target(ratio, targets, "ratio")
    count = _per_target(count, targets, "count")
    for t in targets:
        if t in ratio and t in count:
            raise invalid("target %s has both a ratio and a count; give one" % t.name)
        if t in ratio:
            r = ratio[t]
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r <= 1:
                raise invalid("ratio for %s is %r; expected a number in (0, 1]" % (t.name, r))
        elif t in count:
            c = count[t]
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise invalid("count for %s is %r; expected an integer >= 1" % (t.name, c))
        else:
            ratio[t] = DEFAULT_RATIO[t]
    return ratio, count


def _line_map(selection, shape, layer, target):
    """base[p]: the base-order line of each permuted line p of the target's trained axis."""
    if target in (Target.DOWN, Target.UP):
        return selection.permutation(layer, PermKind.CHANNELS)
    kind = PermKind.HEADS if target == Target.O else PermKind.KV_HEADS
    units = selection.permutation(layer, kind)
    d = shape.head_dim
    return [units[p // d] * d + p % d for p in range(len(units) * d)]


def _layer_weights(layer):
    """The seven projection weights of a layer as TensorViews, by s2ft name."""
    return LayerWeights(**{name: _runtime.view(get_module(layer, path).weight.detach(), name)
                           for path, name in PROJECTIONS})


# Biases follow their weight's rows: q by query head, k and v by KV head,
# gate and up by channel; o and down permute their inputs, not their outputs.
_BIAS_PERMUTATION = {"q": PermKind.HEADS, "k": PermKind.KV_HEADS, "v": PermKind.KV_HEADS,
                     "gate": PermKind.CHANNELS, "up": PermKind.CHANNELS}


@torch.no_grad()
def _permute_biases(layer, selection, index, shape, direction):
    """Applies the layer's co-permutation to the biases of q, k, v, gate and up (base -> permuted or back)."""
    for path, name in PROJECTIONS:
        bias = get_module(layer, path).bias
        kind = _BIAS_PERMUTATION.get(name)
        if bias is None or kind is None:
            continue
        perm = torch.tensor(selection.permutation(index, kind), dtype=torch.long, device=bias.device)
        width = 1 if kind == PermKind.CHANNELS else shape.head_dim
        lines = bias.view(-1, width)
        if direction == Direction.FORWARD:  # position p takes base unit perm[p]
            lines.copy_(lines.index_select(0, perm))
        else:                               # base unit perm[p] takes position p
            lines.index_copy_(0, perm, lines.clone())


def _permute_model(layers, selection, shape, direction):
    """Co-permutes every layer's q, k, v, o, gate, up and down weights (libs2ft) and biases, in place."""
    for i, layer in enumerate(layers):
        device = get_module(layer, "self_attn.o_proj").weight.device
        permute_layer(_runtime.context(device), selection, i, _layer_weights(layer), direction)
        _permute_biases(layer, selection, i, shape, direction)


def _given_selection(selection, shape):
    """(selection, targets, None) for a Selection or a selection file made for ``shape``."""
    if not isinstance(selection, Selection):
        selection = Selection.load(selection)
    if selection.shape != shape:
        raise invalid("the selection is for a model of shape %s; this model is %s" % (selection.shape, shape))
    return selection, list(selection.targets), None


def _select(model, layers, shape, targets, ratio, count, strategy, order, allocation, heads, seed, calibration,
            loss_fn):
    """(selection, targets, options): checks the options, gathers the statistics, runs s2ft_select."""
    if isinstance(targets, (str, Target)):
        targets = (targets,)
    targets = sorted({_target(t) for t in targets})
    if not targets:
        raise invalid("targets is empty; expected some of \"o\", \"v\", \"down\", \"up\"")
    strategy = _choice(strategy, _STRATEGIES, "strategy", Strategy)
    order = _choice(order, _ORDERS, "order", Order)
    allocation = _choice(allocation, _ALLOCATIONS, "allocation", Allocation)
    heads = _choice(heads, _HEADS, "heads", HeadGranularity)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise invalid("seed is %r; expected a non-negative integer" % (seed,))
    ratio, count = _budgets(targets, ratio, count)
    stats = _calibration.collect(model, layers, shape, strategy, targets, calibration, loss_fn)
    try:
        device = _calibration.statistics_device(layers)
        selection = select(_runtime.context(device), shape, stats, targets=targets, strategy=strategy, order=order,
                           allocation=allocation, head_granularity=heads, seed=seed, ratio=ratio, count=count)
    finally:
        if stats is not None:
            stats.close()
    options = {
        "strategy": strategy, "order": order, "allocation": allocation, "heads": heads, "seed": seed,
        "ratio": {t.name: v for t, v in ratio.items()}, "count": {t.name: v for t, v in count.items()},
    }
    return selection, targets, options


def prepare(model, *, targets=("o", "down"), ratio=None, count=None, strategy="random", order="largest",
            allocation="per-layer", heads="group", seed=0, calibration=None, loss_fn=None, permute=True,
            selection=None):
    """Makes ``model`` an S2FT model in place and returns it.

    ``model``: a transformers LlamaForCausalLM, MistralForCausalLM or
    Qwen2ForCausalLM (or their base models; GQA included). Every parameter
    is frozen; in each layer the selected lines of the ``targets`` ("o",
    "v", "down", "up") become the ``weight_slice`` Parameter of an
    :class:`S2FTLinear` replacing that projection.

    Budget per target: ``ratio`` in (0, 1] or ``count`` >= 1 of its units
    (query heads for o, KV groups under heads="group"; KV heads for v;
    channels for down and up), one value for all targets or a dict by
    target name; default ratio o and v 0.05, down and up 0.02.
    ``strategy``: "random" (from ``seed``), "weight", "activation",
    "weight-activation" or "gradient"; ``order`` "largest" or "smallest";
    ``allocation`` "per-layer" or "global"; ``heads`` "group" (whole KV
    groups: contiguous after permuting) or "single" (query heads; under GQA
    their lines are an index list). ``calibration``: an iterable of batches
    (input_ids tensors or dicts of model inputs) that the activation and
    gradient strategies run; ``loss_fn(model, inputs)`` replaces the causal
    LM loss (labels = input_ids) of the gradient strategy.
    ``permute``: co-permute each layer's q, k, v, o, gate, up, down weights
    (and q, k, v, gate, up biases) so the trained lines are contiguous; the
    model's function is unchanged. False keeps the weights in place and
    trains index lists. ``selection``: an s2ft.Selection (or the path of a
    saved one) to use instead of selecting: the targets are its own and the
    selection options are ignored. Raises UnsupportedError for other architectures and
    InvalidArgumentError for bad options.
    """
    model = unwrap(model)
    if getattr(model, ATTRIBUTE, None) is not None:
        raise state_error("the model is already prepared (s2ft.torch.unprepare it first)")
    layers = decoder_layers(model)
    shape = model_shape(model)
    for name, p in model.named_parameters():
        if any(name.endswith(path + ".weight") for path, _ in PROJECTIONS) and not _runtime.supported_dtype(p.dtype):
            raise invalid("%s is %s; libs2ft trains float32, float16 and bfloat16 weights" % (name, p.dtype))
    if selection is not None:
        selection, targets, options = _given_selection(selection, shape)
    else:
        selection, targets, options = _select(model, layers, shape, targets, ratio, count, strategy, order,
                                              allocation, heads, seed, calibration, loss_fn)

    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    if permute:
        _permute_model(layers, selection, shape, Direction.FORWARD)
    for i, layer in enumerate(layers):
        for target in targets:
            base_lines = selection.indices(i, target, lines=True)
            if not base_lines:
                continue  # a global budget gave this layer nothing
            axis = target.axis
            if not permute:
                lines = Slice.lines(axis, base_lines)
                mapped = base_lines
            else:
                line_map = _line_map(selection, shape, i, target)
                try:
                    begin, n = selection.range(i, target)
                    lines = Slice.range(axis, begin, n)
                    positions = range(begin, begin + n)
                except StateError:  # single heads under GQA: not contiguous
                    positions = selection.indices(i, target, lines=True, permuted=True)
                    lines = Slice.lines(axis, positions)
                mapped = [line_map[p] for p in positions]
            path = TARGET_MODULES[target]
            module = S2FTLinear(get_module(layer, path), lines, base_lines=mapped, layer=i, target=target)
            set_module(layer, path, module)
    setattr(model, ATTRIBUTE, S2FTState(shape, selection, bool(permute), options, requires_grad))
    return model


@torch.no_grad()
def unprepare(model):
    """Undoes :func:`prepare` in place, with the trained slices merged; returns the model.

    Every S2FTLinear becomes its original nn.Linear again (its weight now
    holding the trained lines), the co-permutation is inverted (libs2ft,
    bit-exact), and each parameter's requires_grad is restored.
    """
    model = unwrap(model)
    state = state_of(model)
    layers = decoder_layers(model)
    for i, target, module in state.modules(model):
        module.sync_()
        original = module._original
        original.weight = module.weight
        original.bias = module.bias
        set_module(layers[i], TARGET_MODULES[target], original)
    if state.permuted:
        _permute_model(layers, state.selection, state.shape, Direction.INVERSE)
    for name, p in model.named_parameters():
        p.requires_grad_(state.requires_grad.get(name, p.requires_grad))
    delattr(model, ATTRIBUTE)
    return model
