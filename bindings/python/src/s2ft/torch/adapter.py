"""export_adapter(): what training changed in a prepared model, as a libs2ft adapter file."""

import datetime
import json
import os

import torch

from .. import version_string
from ..adapter import Adapter
from ..enums import Axis
from .architectures import unwrap
from .state import state_of

__all__ = ["export_adapter", "adapter_of"]

_STRATEGY_NAMES = {0: "random", 1: "weight", 2: "activation", 3: "weight_act", 4: "gradient"}


def _metadata(model, state, dtype):
    """The provenance keys the s2ft tool records (docs/adapter-format.md) for a prepared model."""
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", "") or ""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch and epoch.isdigit() \
        else datetime.datetime.now(datetime.timezone.utc)
    out = {
        "base_model": os.path.basename(os.path.normpath(name)) if os.path.isdir(name) else name,
        "base_dtype": str(dtype).replace("torch.", ""),
        "library_version": version_string(),
        "created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    o = state.options
    if o is None:  # a selection given to prepare: its options are not known here
        return out
    budget = {t: {"ratio": v} for t, v in o["ratio"].items()}
    budget.update({t: {"count": v} for t, v in o["count"].items()})
    out.update({
        "selection_strategy": _STRATEGY_NAMES[int(o["strategy"])],
        "selection_order": "smallest" if int(o["order"]) else "largest",
        "selection_allocation": "global" if int(o["allocation"]) else "per_layer",
        "selection_head_granularity": "single" if int(o["heads"]) else "by_group",
        "selection_seed": str(o["seed"]),
        "selection_budget": json.dumps(budget, sort_keys=True, separators=(",", ":")),
    })
    return out


# Per trained layer, lines S in base order (base_lines), slice order:
#   delta = f32(trained_slice - initial_slice)    (in float64, rounded once)
#   base  = the base weight in base order; only its lines S are read (their
#           fingerprints), so a zero weight holding initial_slice on S.
@torch.no_grad()
def adapter_of(model, *, name="", default_scale=1.0, metadata=None):
    """The s2ft.Adapter of a prepared model: each trained slice's delta from its value at prepare time.

    Lines are in the base model's order and fingerprinted against the
    unpermuted base, so the adapter applies to the published checkpoint
    (s2ft merge, s2ft.Model, other bindings). ``metadata`` (str -> str)
    adds to or overrides the provenance keys recorded.
    """
    model = unwrap(model)
    state = state_of(model)
    modules = state.modules(model)
    adapter = Adapter(state.shape, name, default_scale)
    for layer, target, module in modules:
        initial = module.initial_slice
        trained = module.weight_slice.detach().to("cpu")
        delta = (trained.double() - initial.double()).float()
        base = torch.zeros((module.out_features, module.in_features), dtype=initial.dtype)
        lines = torch.tensor(module.base_lines, dtype=torch.long)
        if module.axis == Axis.COLUMNS:
            base[:, lines] = initial
        else:
            base[lines] = initial
        adapter.set(layer, target, module.base_lines, delta, base)
    dtype = modules[0][2].initial_slice.dtype if modules else torch.float32
    entries = _metadata(model, state, dtype)
    entries.update(metadata or {})
    for key, value in entries.items():
        adapter.metadata[key] = value
    return adapter


def export_adapter(model, path, *, name="", default_scale=1.0, metadata=None):
    """Saves the adapter of a prepared model (see :func:`adapter_of`) as safetensors at ``path``; returns the path."""
    adapter = adapter_of(model, name=name, default_scale=default_scale, metadata=metadata)
    try:
        adapter.save(path)
    finally:
        adapter.close()
    return path
