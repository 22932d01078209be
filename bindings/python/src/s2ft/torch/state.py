"""What a prepared model remembers: its shape, selection, options and the modules that train."""

import copy

from ..errors import invalid
from ..selection import Selection
from ._file_bytes import load_from_bytes, saved_bytes
from .architectures import TARGET_MODULES, decoder_layers, get_module, unwrap
from .linear import S2FTLinear

#: The attribute of a prepared model that holds its S2FTState.
ATTRIBUTE = "_s2ft_state"


class S2FTState:
    """The selection a model was prepared with and how (see :func:`s2ft.torch.prepare`).

    ``shape`` (s2ft.ModelShape), ``selection`` (s2ft.Selection), ``permuted``
    (weights co-permuted so that trained lines come first), ``options``
    (the selection options, for adapter metadata; None for a selection
    given to prepare) and ``requires_grad`` (each
    parameter's flag before prepare froze it, by name).
    """

    def __init__(self, shape, selection, permuted, options, requires_grad):
        """Records a preparation."""
        self.shape = shape
        self.selection = selection
        self.permuted = permuted
        self.options = options
        self.requires_grad = requires_grad

    def modules(self, model):
        """The S2FTLinear layers of ``model``: (layer, target, module) in layer then target order."""
        out = []
        for i, layer in enumerate(decoder_layers(unwrap(model))):
            for target, path in sorted(TARGET_MODULES.items()):
                module = get_module(layer, path)
                if isinstance(module, S2FTLinear):
                    out.append((i, target, module))
        return out

    def __deepcopy__(self, memo):
        """A copy sharing the (immutable) selection handle."""
        out = S2FTState.__new__(S2FTState)
        memo[id(self)] = out
        for key, value in self.__dict__.items():
            out.__dict__[key] = value if key == "selection" else copy.deepcopy(value, memo)
        return out

    def __getstate__(self):
        """Pickles the selection as its JSON file's text."""
        state = dict(self.__dict__)
        state["selection"] = saved_bytes(self.selection.save, "selection.json")
        return state

    def __setstate__(self, state):
        """Loads the pickled selection."""
        state["selection"] = load_from_bytes(Selection.load, state["selection"], "selection.json")
        self.__dict__.update(state)


def state_of(model, required=True):
    """The S2FTState of a prepared model (DDP wrappers are looked through); None or InvalidArgumentError if unprepared."""
    state = getattr(unwrap(model), ATTRIBUTE, None)
    if state is None and required:
        raise invalid("the model was not prepared by s2ft.torch.prepare")
    return state
