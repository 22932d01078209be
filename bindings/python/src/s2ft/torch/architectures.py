"""The transformers models s2ft.torch prepares: LLaMA, Mistral and Qwen2 decoders (GQA included).

Each decoder layer has ``self_attn.{q,k,v,o}_proj`` and
``mlp.{gate,up,down}_proj`` as nn.Linear, with the shapes of
:class:`s2ft.ModelShape`. Biases (Qwen2's q/k/v, LLaMA's attention_bias and
mlp_bias) are allowed: they are never trained, and those of q, k, v, gate
and up are permuted with their weights' rows.
"""

from torch import nn

from .. import _capi
from ..enums import Target
from ..errors import UnsupportedError, invalid
from ..shape import ModelShape

#: config.model_type values of the supported family.
MODEL_TYPES = ("llama", "mistral", "qwen2")

#: The projections of a layer, as (attribute path, s2ft weight name).
PROJECTIONS = (
    ("self_attn.q_proj", "q"),
    ("self_attn.k_proj", "k"),
    ("self_attn.v_proj", "v"),
    ("self_attn.o_proj", "o"),
    ("mlp.gate_proj", "gate"),
    ("mlp.up_proj", "up"),
    ("mlp.down_proj", "down"),
)

#: The module of each trainable target inside a layer.
TARGET_MODULES = {
    Target.O: "self_attn.o_proj",
    Target.V: "self_attn.v_proj",
    Target.DOWN: "mlp.down_proj",
    Target.UP: "mlp.up_proj",
}


def unsupported(message):
    """An UnsupportedError raised by this package."""
    return UnsupportedError(_capi.S2FT_ERR_UNSUPPORTED, message)


def unwrap(model):
    """The model inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def decoder_layers(model):
    """The decoder layers (an nn.ModuleList) of a supported causal LM or its base model; raises UnsupportedError otherwise."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_TYPES:
        raise unsupported(
            "s2ft.torch prepares transformers LLaMA, Mistral and Qwen2 models (config.model_type %s); "
            "this is a %s with model_type %r" % (", ".join(map(repr, MODEL_TYPES)), type(model).__name__, model_type))
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise unsupported("%s has no decoder layers at .model.layers or .layers" % type(model).__name__)
    if getattr(config, "pretraining_tp", 1) not in (None, 1):
        raise unsupported("config.pretraining_tp is %r: LLaMA's tensor-parallel emulation reads the weights "
                          "directly, bypassing the trained slices; set it to 1" % config.pretraining_tp)
    return layers


def get_module(layer, path):
    """The submodule at a dotted ``path`` of ``layer``."""
    module = layer
    for part in path.split("."):
        module = getattr(module, part)
    return module


def set_module(layer, path, module):
    """Replaces the submodule at a dotted ``path`` of ``layer``."""
    parent_path, _, name = path.rpartition(".")
    parent = get_module(layer, parent_path) if parent_path else layer
    setattr(parent, name, module)


def model_shape(model):
    """The s2ft.ModelShape of a supported model, from its config, checked against every layer's weights."""
    layers = decoder_layers(model)
    c = model.config
    n_heads = c.num_attention_heads
    n_kv = getattr(c, "num_key_value_heads", None) or n_heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // n_heads
    shape = ModelShape(n_layers=c.num_hidden_layers, d_model=c.hidden_size, n_heads=n_heads, n_kv_heads=n_kv,
                       head_dim=head_dim, d_ff=c.intermediate_size)
    shape.check()
    if len(layers) != shape.n_layers:
        raise invalid("config.num_hidden_layers is %d but the model has %d layers" % (shape.n_layers, len(layers)))
    heads, kv = n_heads * head_dim, n_kv * head_dim
    expected = {
        "q": (heads, shape.d_model), "k": (kv, shape.d_model), "v": (kv, shape.d_model), "o": (shape.d_model, heads),
        "gate": (shape.d_ff, shape.d_model), "up": (shape.d_ff, shape.d_model), "down": (shape.d_model, shape.d_ff),
    }
    for i, layer in enumerate(layers):
        for path, name in PROJECTIONS:
            try:
                module = get_module(layer, path)
            except AttributeError:
                raise unsupported("layer %d has no %s" % (i, path)) from None
            if type(module) is not nn.Linear:
                raise unsupported("layer %d's %s is a %s, not an nn.Linear (already prepared, or wrapped by "
                                  "another library?)" % (i, path, type(module).__name__))
            if tuple(module.weight.shape) != expected[name]:
                raise invalid("layer %d's %s weight is %s; the config implies %s"
                              % (i, path, tuple(module.weight.shape), expected[name]))
    return shape
