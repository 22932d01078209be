"""S2FTOptimizer: libs2ft's fused AdamW/SGD over the trained slices, as a torch.optim.Optimizer."""


import torch

from ..context import Context
from ..enums import OptimizerKind
from ..errors import invalid, state_error
from ..optimizer import Optimizer
from ._file_bytes import load_from_bytes, saved_bytes
from . import _runtime
from .linear import S2FTLinear
from .state import state_of

__all__ = ["S2FTOptimizer"]


def _modules(target):
    """The S2FTLinear layers of a prepared model, or of an iterable of S2FTLinear."""
    if isinstance(target, torch.nn.Module):
        state = state_of(target, required=False)
        if state is not None:
            return [m for _, _, m in state.modules(target)]
        return [m for m in target.modules() if isinstance(m, S2FTLinear)]
    modules = list(target)
    if not all(isinstance(m, S2FTLinear) for m in modules):
        raise invalid("S2FTOptimizer takes a prepared model or S2FTLinear layers")
    return modules


class S2FTOptimizer(torch.optim.Optimizer):
    """AdamW or SGD on the trained slices by libs2ft (s2ft_optimizer): state for the slices only.

    ``model``: a prepared model (or S2FTLinear layers) on one device. The
    step updates each weight's lines in place (f16/bf16 weights get f32
    master slices) and the weight_slice Parameters with them; learning-rate
    schedulers change ``param_groups[0]["lr"]``, the other options are fixed
    at creation. ``kind`` "adamw" or "sgd"; ``max_grad_norm`` > 0 clips by
    the global norm of all slice gradients. The weights must stay where
    they are (no ``.to()``) while the optimizer lives.
    """

    def __init__(self, model, lr=1e-3, *, kind="adamw", betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum=0.0, nesterov=False, max_grad_norm=0.0):
        """Registers every trained slice of ``model`` with a new libs2ft optimizer."""
        modules = _modules(model)
        if not modules:
            raise invalid("S2FTOptimizer: no trained slices (prepare the model first)")
        devices = {m.weight.device for m in modules}
        if len(devices) != 1:
            raise _runtime.device_error("S2FTOptimizer: the slices live on %d devices; libs2ft's optimizer "
                                        "runs on one" % len(devices))
        self._device = devices.pop()
        defaults = dict(lr=lr, kind=kind, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum=momentum, nesterov=nesterov, max_grad_norm=max_grad_norm)
        super().__init__([m.weight_slice for m in modules], defaults)
        self._modules_list = modules
        if self._device.type == "cuda":
            self._ctx = Context.cuda(self._device.index)
        else:
            self._ctx = Context.cpu()
        self._use_stream()
        self._opt = Optimizer(self._ctx, OptimizerKind[kind.upper()] if isinstance(kind, str) else kind,
                              beta1=betas[0], beta2=betas[1], eps=eps, weight_decay=weight_decay,
                              momentum=momentum, nesterov=nesterov, max_grad_norm=max_grad_norm)
        self._pointers = []
        for m in modules:
            m.sync_()
            self._opt.add_param(_runtime.view(m.weight.detach(), "weight"), m.lines)
            self._pointers.append(m.weight.data_ptr())
        #: The global gradient norm before clipping of the last step (when max_grad_norm > 0), else None.
        self.last_grad_norm = None

    def _use_stream(self):
        """Points a CUDA context at PyTorch's current stream."""
        if self._device.type == "cuda":
            self._ctx.set_stream(torch.cuda.current_stream(self._device))

    @torch.no_grad()
    def step(self, closure=None):
        """One libs2ft step over all slices with ``param_groups[0]["lr"]``; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = []
        for m, pointer in zip(self._modules_list, self._pointers):
            if m.weight.data_ptr() != pointer:
                raise state_error("S2FTOptimizer: a weight moved since the optimizer was made "
                                  "(.to(), load_state_dict(assign=True)?); make a new optimizer")
            m.sync_()
            g = m.weight_slice.grad
            if g is None:
                g = torch.zeros_like(m.weight_slice)
            elif g.dtype not in (torch.float32, m.weight.dtype):
                g = g.float()
            grads.append(_runtime.view(g, "grad"))
        self._use_stream()
        group = self.param_groups[0]
        norm = self._opt.step(group["lr"], grads, return_norm=group["max_grad_norm"] > 0)
        self.last_grad_norm = norm
        for m in self._modules_list:
            m._copy_out()
        return loss

    @property
    def step_count(self):
        """The number of steps taken."""
        return self._opt.step_count

    def state_dict(self):
        """torch's optimizer state dict, with libs2ft's state (moments, masters, step count) as bytes under "s2ft"."""
        out = super().state_dict()
        out["s2ft"] = saved_bytes(self._opt.save, "optimizer.safetensors")
        return out

    def load_state_dict(self, state_dict):
        """Restores a state_dict() of an optimizer over the same slices; the master slices go back to the weights."""
        if "s2ft" not in state_dict:
            raise invalid("load_state_dict: not a state dict of an S2FTOptimizer (no \"s2ft\" entry)")
        rest = {k: v for k, v in state_dict.items() if k != "s2ft"}
        super().load_state_dict(rest)
        for m in self._modules_list:
            m.sync_()
        self._use_stream()
        load_from_bytes(self._opt.load, state_dict["s2ft"], "optimizer.safetensors")
        for m in self._modules_list:
            m._copy_out()
