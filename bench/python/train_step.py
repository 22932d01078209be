#!/usr/bin/env python3
"""One training step of a LLaMA-shaped model: full fine-tuning vs PEFT LoRA vs S2FT.

A transformers LlamaForCausalLM with random weights takes one training step
(forward with labels, backward, AdamW step) per repetition in each of three
variants, built from the same weights and run interleaved in one process:

  full   every parameter trained (torch.optim.AdamW over all of them)
  lora   PEFT LoRA (get_peft_model) at about S2FT's parameter count: the rank
         r is chosen so that r * sum(in + out) over the target modules is the
         nearest to S2FT's trainable count (--lora-r auto), on q, k, v, up and
         down (--lora-targets qkvud, the paper's comparison) or o and down (od)
  s2ft   s2ft.torch.prepare(): per block a ratio of attention heads (o_proj
         columns, --o-ratio) and of FFN channels (down_proj columns,
         --down-ratio) selected, co-permuted to the front and trained through
         S2FTLinear's partial backward; nothing else is trained

Each repetition runs the variants round-robin (the order rotates from one
repetition to the next), after --warmup untimed repetitions; the step time is
the median of --reps (with min and max). Before anything is timed the
variants are checked against full fine-tuning at the same weights (same loss;
S2FT's slice gradient equals the matching columns of the full gradient; LoRA's
B gradients are non-zero), so a variant that computes less than it should
cannot win.

Memory per variant:
  saved activations   bytes of the tensors autograd keeps for backward,
                      counted through torch.autograd.graph.saved_tensors_hooks
                      (each storage once; the model's own parameters and
                      buffers are not counted: they are resident anyway)
  gradients           sum of the .grad tensors after backward (set_to_none
                      between steps, so they exist only during the step)
  optimizer state     sum of AdamW's state tensors
  weights             parameters and buffers of the variant's model
  CPU: step peak      measured: growth of the process's peak RSS during one
                      step (/proc/self/status VmHWM, reset through
                      /proc/self/clear_refs), in a pass after the timed steps
                      with glibc's mmap threshold lowered to 64 KiB and
                      malloc_trim before each step, so freed tensors go back
                      to the kernel and do not hide the next step's growth.
                      peak = weights + optimizer state + step peak
  CUDA: peak          torch.cuda.max_memory_allocated during one step, less
                      what the other variants' models hold (all live on the
                      device at once): the variant's own peak

Usage (CPU; see docs/benchmarks.md):
  PYTHONPATH=bindings/python/src S2FT_LIBRARY=build/src/libs2ft.so \\
    python3 bench/python/train_step.py [--reps 5] [--json out.jsonl]
"""
import argparse
import copy
import ctypes
import gc
import json
import math
import os
import statistics
import sys
import time

MiB = 1024.0 * 1024.0


# ---- arguments --------------------------------------------------------------------------


def add_model_args(p, *, d_model=1024, layers=8, heads=16, kv_heads=None, d_ff=2752, vocab=1024, tokens=256,
                   layers_type=int, layers_help=None):
    g = p.add_argument_group("model (LLaMA architecture, random weights)")
    g.add_argument("--d-model", type=int, default=d_model)
    g.add_argument("--layers", type=layers_type, default=layers, help=layers_help)
    g.add_argument("--heads", type=int, default=heads, help="query heads (head_dim = d_model / heads)")
    g.add_argument("--kv-heads", type=int, default=kv_heads, help="KV heads (default: --heads, no GQA)")
    g.add_argument("--d-ff", type=int, default=d_ff)
    g.add_argument("--vocab", type=int, default=vocab)
    g.add_argument("--tokens", type=int, default=tokens, help="sequence length")
    g.add_argument("--batch", type=int, default=1)
    g.add_argument("--dtype", choices=["f32", "bf16"], default=None,
                   help="weights and activations (default: f32 on CPU, bf16 on CUDA)")


def add_run_args(p, *, reps=5, warmup=1):
    g = p.add_argument_group("run")
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    g.add_argument("--variants", default="full,lora,s2ft", help="comma-separated subset of full,lora,s2ft")
    g.add_argument("--reps", type=int, default=reps, help="timed repetitions per variant")
    g.add_argument("--warmup", type=int, default=warmup, help="untimed repetitions per variant first")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own default)")
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (all variants)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--adamw-impl", choices=["default", "foreach", "fused", "best"], default="default",
                   help="torch.optim.AdamW implementation: PyTorch's default, foreach, fused, or best: fused "
                        "where every trainable parameter is a contiguous CUDA tensor, else the default")
    g.add_argument("--o-ratio", type=float, default=0.05, help="S2FT: share of attention heads trained in o_proj")
    g.add_argument("--down-ratio", type=float, default=0.02, help="S2FT: share of FFN channels trained in down_proj")
    g.add_argument("--s2ft-strategy", default=None,
                   help="S2FT selection strategy passed to prepare() (default: prepare()'s own, random)")
    g.add_argument("--lora-r", default="auto", help="LoRA rank, or 'auto': nearest to S2FT's trainable count")
    g.add_argument("--lora-targets", default="qkvud", choices=["qkvud", "od"],
                   help="LoRA on q,k,v,up,down (the paper's) or on o,down (S2FT's own weights)")
    g.add_argument("--phases", action="store_true",
                   help="CUDA: also time forward, backward and optimizer apart (adds two synchronisations per "
                        "step); always done on CPU, where it costs nothing")
    g.add_argument("--no-check", action="store_true", help="skip the correctness check (not for reported figures)")
    g.add_argument("--no-memory-pass", action="store_true", help="skip the CPU step-peak pass")
    g.add_argument("--json", default=None, help="append one JSON line per variant to this file")


LORA_TARGETS = {
    "qkvud": ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
    "od": ["o_proj", "down_proj"],
}


# ---- environment ----------------------------------------------------------------------


def import_torch():
    import torch  # noqa: E402  (imported late so --help works without torch)
    return torch


def dtype_of(torch, args):
    name = args.dtype or ("f32" if args.device == "cpu" else "bf16")
    args.dtype = name
    return {"f32": torch.float32, "bf16": torch.bfloat16}[name]


def versions(torch):
    v = {"python": sys.version.split()[0], "torch": torch.__version__}
    for mod in ("transformers", "peft"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception as e:  # pragma: no cover
            v[mod] = f"unavailable ({e.__class__.__name__})"
    try:
        import s2ft
        v["s2ft"] = getattr(s2ft, "__version__", "?")
        lib = getattr(s2ft, "library_path", None)
        v["libs2ft"] = lib() if callable(lib) else (lib or os.environ.get("S2FT_LIBRARY", "?"))
    except Exception as e:
        v["s2ft"] = f"unavailable ({e.__class__.__name__}: {e})"
    return v


def machine(torch, device):
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(torch.device(device))
        return f"{p.name}, {p.total_memory / 2**30:.1f} GiB, CUDA {torch.version.cuda}"
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} CPUs usable, torch threads {torch.get_num_threads()}"


# ---- model ------------------------------------------------------------------------------


def llama_config(args):
    from transformers import LlamaConfig

    if args.d_model % args.heads:
        raise SystemExit(f"--d-model {args.d_model} is not a multiple of --heads {args.heads}")
    kv = args.kv_heads or args.heads
    cfg = LlamaConfig(
        vocab_size=args.vocab,
        hidden_size=args.d_model,
        intermediate_size=args.d_ff,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=kv,
        max_position_embeddings=max(args.tokens, 128),
        tie_word_embeddings=False,
        use_cache=False,
    )
    return cfg


def describe_config(cfg, args):
    hd = cfg.hidden_size // cfg.num_attention_heads
    return (f"LlamaForCausalLM, random weights, {args.dtype}: d_model {cfg.hidden_size}, {cfg.num_hidden_layers} layers, "
            f"{cfg.num_attention_heads} heads x {hd} (KV heads {cfg.num_key_value_heads}), d_ff {cfg.intermediate_size}, "
            f"vocab {cfg.vocab_size} (untied head), {args.tokens} tokens x batch {args.batch}")


def make_model(torch, cfg, dtype, device, seed):
    """A LlamaForCausalLM made on the device in the benchmark's dtype (no fp32 copy first)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.manual_seed_all(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if device != "cpu" and hasattr(torch, "device") and hasattr(torch.device(device), "__enter__"):
            with torch.device(device):  # torch >= 2.0: weights made and initialised on the device
                model = LlamaForCausalLM(cfg)
        else:
            model = LlamaForCausalLM(cfg).to(device)
    finally:
        torch.set_default_dtype(old)
    model.to(dtype=dtype)
    model.train()
    # Rotary tables and other buffers follow the model's dtype where transformers allows.
    return model


def count_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def storage_key(t):
    """(data pointer, bytes) of the storage behind t, whatever torch version."""
    try:
        s = t.untyped_storage()
    except AttributeError:  # torch < 2.0
        s = t.storage()
    try:
        return s.data_ptr(), s.nbytes()
    except Exception:  # pragma: no cover  (sparse, meta, ...)
        return None, 0


def unique_bytes(tensors):
    seen = {}
    for t in tensors:
        if t is None:
            continue
        ptr, nb = storage_key(t)
        if ptr is not None and ptr != 0:
            seen[ptr] = nb
    return sum(seen.values())


def weight_bytes(model):
    return unique_bytes(list(model.parameters()) + list(model.buffers()))


def grad_bytes(model):
    return unique_bytes([p.grad for p in model.parameters() if p.grad is not None])


def optimizer_state_bytes(torch, opt):
    ts = []
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                ts.append(v)
    return unique_bytes(ts)


# ---- variants -----------------------------------------------------------------------------


class Variant:
    """One model, its optimizer, and what the benchmark measured for it."""

    def __init__(self, name, model, note):
        self.name = name
        self.model = model
        self.note = note
        self.opt = None
        self.times_ms = []
        self.phase_ms = []  # (forward, backward, optimizer) per timed step, where measured
        self.mem = {}
        self.info = {}

    def params(self):
        return [p for p in self.model.parameters() if p.requires_grad]


def make_optimizer(torch, params, args):
    """torch.optim.AdamW over params, and the implementation it was asked for.

    best: fused (one kernel, no temporaries) where PyTorch has it for these
    parameters (CUDA, and every parameter contiguous), else PyTorch's default
    (foreach on CUDA, whose step makes one temporary of the state's size; the
    for-loop on CPU). S2FT's slices are column views of W, not contiguous.
    """
    kw = {"lr": args.lr, "weight_decay": args.weight_decay}
    impl = args.adamw_impl
    if impl == "best":
        fused_ok = all(p.is_cuda and p.is_contiguous() for p in params) and "fused" in _adamw_params(torch)
        impl = "fused" if fused_ok else "default"
    if impl == "foreach":
        kw["foreach"] = True
    elif impl == "fused":
        kw["fused"] = True
    return torch.optim.AdamW(params, **kw), impl


def _adamw_params(torch):
    import inspect
    try:
        return inspect.signature(torch.optim.AdamW.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return {}


def s2ft_torch():
    try:
        import s2ft.torch as st
    except Exception as e:
        raise SystemExit(f"cannot import s2ft.torch ({e.__class__.__name__}: {e}); set PYTHONPATH to "
                         "bindings/python/src and S2FT_LIBRARY to libs2ft.so, or leave s2ft out of --variants")
    return st


def build_s2ft(torch, base, args):
    st = s2ft_torch()
    model = copy.deepcopy(base)
    kw = {"targets": ("o", "down"), "ratio": {"o": args.o_ratio, "down": args.down_ratio}, "seed": args.seed}
    if args.s2ft_strategy:
        kw["strategy"] = args.s2ft_strategy
    result = st.prepare(model, **kw)
    if isinstance(result, torch.nn.Module):
        model = result
    mods = s2ft_modules(model)
    if not mods:
        raise SystemExit("s2ft.torch.prepare() replaced no module with S2FTLinear")
    o = [m for n, m in mods if n.endswith("o_proj")]
    d = [m for n, m in mods if n.endswith("down_proj")]
    k_o = sorted({slice_width(m) for m in o})
    k_d = sorted({slice_width(m) for m in d})
    hd = args.d_model // args.heads
    note = (f"o_proj: {fmt_set(k_o)} of {args.d_model} columns per layer "
            f"({fmt_set([k // hd for k in k_o])} of {args.heads} heads, ratio {args.o_ratio:g}); "
            f"down_proj: {fmt_set(k_d)} of {args.d_ff} channels per layer (ratio {args.down_ratio:g})")
    v = Variant("s2ft", model, note)
    v.info.update({"o_columns": k_o, "down_channels": k_d, "modules": len(mods)})
    return v


def s2ft_modules(model):
    """(name, module) of every S2FTLinear in the model."""
    out = []
    for n, m in model.named_modules():
        if type(m).__name__ == "S2FTLinear":
            out.append((n, m))
    return out


def trainable_param_of(m):
    ps = [p for p in m.parameters() if p.requires_grad]
    if len(ps) != 1:
        raise SystemExit(f"S2FTLinear with {len(ps)} trainable parameters (expected one slice)")
    return ps[0]


def slice_width(m):
    """k: how many lines (columns of o_proj/down_proj) the module trains."""
    return trainable_param_of(m).shape[1]


def slice_base_columns(m):
    """The module's trained columns as indices into the base (unpermuted) weight's columns."""
    for attr in ("base_lines",):
        idx = getattr(m, attr, None)
        if idx is not None:
            return [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
    return None


def fmt_set(xs):
    xs = sorted(set(xs))
    return str(xs[0]) if len(xs) == 1 else f"{xs[0]}-{xs[-1]}"


def lora_params_per_rank(cfg, targets):
    d, f = cfg.hidden_size, cfg.intermediate_size
    hd = d // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * hd
    shapes = {  # (in, out)
        "q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
        "gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d),
    }
    return cfg.num_hidden_layers * sum(sum(shapes[t]) for t in targets)


def build_lora(torch, base, cfg, args, match):
    from peft import LoraConfig, get_peft_model

    targets = LORA_TARGETS[args.lora_targets]
    per_r = lora_params_per_rank(cfg, targets)
    if args.lora_r == "auto":
        if match is None:
            raise SystemExit("--lora-r auto needs the s2ft variant (its trainable count); give --lora-r N")
        r = max(1, int(round(match / per_r)))
    else:
        r = int(args.lora_r)
    lc = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, bias="none", target_modules=targets,
                    task_type="CAUSAL_LM")
    model = get_peft_model(copy.deepcopy(base), lc)
    adtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if p.requires_grad})
    note = f"PEFT LoRA r={r}, alpha={2 * r}, on {','.join(t.replace('_proj', '') for t in targets)}; adapter dtype {'/'.join(adtypes)}"
    if args.lora_r == "auto":
        note += f" (r chosen for S2FT's {match:,} params: {per_r:,} per unit of r)"
    v = Variant("lora", model, note)
    v.info.update({"r": r, "targets": targets, "adapter_dtype": adtypes})
    return v


def build_full(base):
    for p in base.parameters():
        p.requires_grad_(True)
    return Variant("full", base, "every parameter trained")


# ---- one step -----------------------------------------------------------------------------


def make_batch(torch, args, device):
    g = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, args.vocab, (args.batch, args.tokens), generator=g)
    return ids.to(device)


def forward_loss(v, ids):
    out = v.model(input_ids=ids, labels=ids)
    return out.loss


def train_step(v, ids):
    v.opt.zero_grad(set_to_none=True)
    loss = forward_loss(v, ids)
    loss.backward()
    v.opt.step()
    return loss


def timed_step(torch, v, ids, cuda, phases):
    """One training step: total milliseconds, and (forward, backward, optimizer) ms when phases is set.

    On CUDA the phases cost two extra synchronisations, so they are taken only
    with --phases (and the total then includes those waits).
    """
    v.opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = forward_loss(v, ids)
    if phases and cuda:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    loss.backward()
    if phases and cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    v.opt.step()
    if cuda:
        torch.cuda.synchronize()
    t3 = time.perf_counter()
    split = ((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3) if phases else None
    return (t3 - t0) * 1e3, split


def sync(torch, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- correctness --------------------------------------------------------------------------


def tolerances(args):
    # f32: only summation order differs (co-permuted down_proj, PEFT's extra zero term).
    # bf16: rounding differs along 32 layers; a wrong gradient is off by ~1 (uncorrelated), not 0.1.
    return (1e-5, 1e-3) if args.dtype == "f32" else (2e-2, 1e-1)


def rel_err(torch, a, b):
    a = a.detach().float()
    b = b.detach().float()
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-30)).item()


def check(torch, variants, ids, args, log):
    """Same loss at the same weights; S2FT's slice gradients equal the full gradient's columns."""
    tol_loss, tol_grad = tolerances(args)
    by = {v.name: v for v in variants}
    losses = {}
    for v in variants:
        v.model.zero_grad(set_to_none=True)
        loss = forward_loss(v, ids)
        loss.backward()
        losses[v.name] = loss.item()
    failures = []
    ref_name = "full" if "full" in by else variants[0].name
    ref = losses[ref_name]
    for name, l in losses.items():
        if not math.isfinite(l):
            failures.append(f"{name}: loss {l}")
        elif abs(l - ref) > tol_loss * max(1.0, abs(ref)):
            failures.append(f"{name}: loss {l:.7g} differs from {ref_name}'s {ref:.7g}")
    log("check: losses at the same weights: " + ", ".join(f"{n} {l:.7g}" for n, l in losses.items()))

    if "lora" in by:
        bs = [p.grad for n, p in by["lora"].model.named_parameters() if "lora_B" in n]
        nz = sum(1 for g in bs if g is not None and g.abs().sum().item() > 0)
        if not bs or nz != len(bs):
            failures.append(f"lora: {nz} of {len(bs)} lora_B gradients are non-zero")
        else:
            log(f"check: lora: all {len(bs)} lora_B gradients non-zero")

    if "s2ft" in by:
        mods = s2ft_modules(by["s2ft"].model)
        worst, compared, bad = 0.0, 0, 0
        full_w = dict(by["full"].model.named_parameters()) if "full" in by else {}
        for n, m in mods:
            p = trainable_param_of(m)
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum().item() == 0:
                bad += 1
                continue
            cols = slice_base_columns(m)
            wname = n.split("base_model.model.", 1)[-1] + ".weight"
            if cols is None or wname not in full_w or full_w[wname].grad is None:
                continue
            g_full = full_w[wname].grad[:, cols]
            worst = max(worst, rel_err(torch, p.grad, g_full))
            compared += 1
        if bad:
            failures.append(f"s2ft: {bad} of {len(mods)} trained slices have a zero or non-finite gradient")
        if compared:
            log(f"check: s2ft: slice gradients of {compared} modules vs the full gradient's columns: "
                f"max relative error {worst:.2e} (tolerance {tol_grad:g})")
            if worst > tol_grad:
                failures.append(f"s2ft: slice gradient differs from the full gradient's columns by {worst:.2e}")
        elif "full" in by:
            failures.append("s2ft: could not map any S2FTLinear slice to base columns to compare gradients")
    for v in variants:
        v.model.zero_grad(set_to_none=True)
    if failures:
        raise SystemExit("correctness check failed:\n  " + "\n  ".join(failures))
    return losses


# ---- memory -------------------------------------------------------------------------------


class SavedTensorCounter:
    """Bytes of the storages autograd saves for backward, each once, parameters excluded."""

    def __init__(self, torch, model):
        self.torch = torch
        self.exclude = set()
        for t in list(model.parameters()) + list(model.buffers()):
            ptr, _ = storage_key(t)
            self.exclude.add(ptr)
        self.seen = {}

    def pack(self, t):
        ptr, nb = storage_key(t)
        if ptr and ptr not in self.exclude:
            self.seen[ptr] = nb
        return t

    @staticmethod
    def unpack(t):
        return t

    def bytes(self):
        return sum(self.seen.values())


def proc_status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def cpu_peak_supported():
    return os.path.exists("/proc/self/clear_refs") and proc_status_kib("VmHWM") is not None


def reset_cpu_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class Glibc:
    M_TRIM_THRESHOLD = -1
    M_MMAP_THRESHOLD = -3

    def __init__(self):
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            self.libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            self.libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            self.libc = None

    def return_freed_memory(self):
        """Large allocations from mmap (released at free), and the heap trimmed now."""
        if self.libc is None:
            return False
        self.libc.mallopt(self.M_MMAP_THRESHOLD, 64 * 1024)
        self.libc.mallopt(self.M_TRIM_THRESHOLD, 128 * 1024)
        self.libc.malloc_trim(0)
        return True

    def trim(self):
        if self.libc is not None:
            self.libc.malloc_trim(0)


def measure_accounting(torch, v, ids, device):
    """One untimed step with the saved-tensor counter: saved, gradient, optimizer and weight bytes."""
    counter = SavedTensorCounter(torch, v.model)
    v.opt.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        loss = forward_loss(v, ids)
    loss.backward()
    g = grad_bytes(v.model)
    v.opt.step()
    sync(torch, device)
    v.mem.update({
        "saved_bytes": counter.bytes(),
        "grad_bytes": g,
        "optimizer_bytes": optimizer_state_bytes(torch, v.opt),
        "weight_bytes": weight_bytes(v.model),
    })
    v.opt.zero_grad(set_to_none=True)


def persistent_bytes(torch, v):
    """What the variant holds between steps: weights, buffers, optimizer state, retained grads."""
    ts = list(v.model.parameters()) + list(v.model.buffers())
    ts += [p.grad for p in v.model.parameters() if p.grad is not None]
    for st in v.opt.state.values():
        ts += [x for x in st.values() if torch.is_tensor(x)]
    return unique_bytes(ts)


def measure_cuda_peak(torch, v, ids, device):
    v.opt.zero_grad(set_to_none=True)
    gc.collect()
    torch.cuda.synchronize()
    own_before = persistent_bytes(torch, v)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    train_step(v, ids)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated(device)
    others = before - own_before
    v.mem["cuda_peak_bytes"] = peak - others
    v.mem["cuda_persistent_bytes"] = own_before
    v.opt.zero_grad(set_to_none=True)


def measure_cpu_peak(torch, v, ids, glibc):
    v.opt.zero_grad(set_to_none=True)
    gc.collect()
    glibc.trim()
    rss = proc_status_kib("VmRSS")
    reset_cpu_peak()
    train_step(v, ids)
    hwm = proc_status_kib("VmHWM")
    v.opt.zero_grad(set_to_none=True)
    growth = max(0, hwm - rss) * 1024
    v.mem["cpu_step_growth_bytes"] = min(growth, v.mem.get("cpu_step_growth_bytes", growth))
    v.mem["cpu_peak_bytes"] = v.mem["weight_bytes"] + v.mem["optimizer_bytes"] + v.mem["cpu_step_growth_bytes"]


# ---- the run ------------------------------------------------------------------------------


def run(args, log=print):
    torch = import_torch()
    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available to torch")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = dtype_of(torch, args)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    for n in names:
        if n not in ("full", "lora", "s2ft"):
            raise SystemExit(f"unknown variant '{n}'")
    cfg = llama_config(args)
    if hasattr(cfg, "_attn_implementation"):  # the same attention for every variant
        cfg._attn_implementation = "sdpa" if _has_sdpa(torch) else "eager"

    env = {"machine": machine(torch, dev), "versions": versions(torch),
           "config": describe_config(cfg, args), "attention": getattr(cfg, "_attn_implementation", "?")}
    log(f"machine: {env['machine']}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    log(f"model: {env['config']}, attention {env['attention']}")

    t0 = time.perf_counter()
    base = make_model(torch, cfg, dtype, dev, args.seed)
    total_params = sum(p.numel() for p in base.parameters())
    log(f"model made in {time.perf_counter() - t0:.1f} s: {total_params:,} parameters")
    for p in base.parameters():
        p.requires_grad_(True)

    variants = []
    s2ft_count = None
    if "s2ft" in names:
        t0 = time.perf_counter()
        v = build_s2ft(torch, base, args)
        s2ft_count = count_trainable(v.model)
        log(f"s2ft prepared in {time.perf_counter() - t0:.1f} s")
        variants.append(v)
    if "lora" in names:
        variants.append(build_lora(torch, base, cfg, args, s2ft_count))
    if "full" in names:
        variants.append(build_full(base))
    else:
        del base
    variants.sort(key=lambda v: ["full", "lora", "s2ft"].index(v.name))
    for v in variants:
        v.info["trainable"] = count_trainable(v.model)
        v.info["total_params"] = total_params
        v.opt, v.info["adamw"] = make_optimizer(torch, v.params(), args)
        log(f"  {v.name:5} {v.info['trainable']:>13,} trainable ({100.0 * v.info['trainable'] / total_params:.3f}%), "
            f"AdamW {v.info['adamw']}: {v.note}")

    ids = make_batch(torch, args, dev)
    if not args.no_check:
        check(torch, variants, ids, args, log)
    else:
        log("check: skipped (--no-check)")

    # Warm-up (allocates AdamW's state), then the accounting step of each variant.
    for _ in range(args.warmup):
        for v in variants:
            train_step(v, ids)
            sync(torch, dev)
    for v in variants:
        measure_accounting(torch, v, ids, dev)

    # Timed repetitions, round-robin with a rotating order.
    cuda = dev.startswith("cuda")
    phases = not cuda or args.phases
    for rep in range(args.reps):
        k = rep % len(variants)
        for v in variants[k:] + variants[:k]:
            total, split = timed_step(torch, v, ids, cuda, phases)
            v.opt.zero_grad(set_to_none=True)  # gradients do not stay resident while the others step
            v.times_ms.append(total)
            if split is not None:
                v.phase_ms.append(split)
        log(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{v.name} {v.times_ms[-1]:.1f} ms" for v in variants))

    # Peak memory.
    if dev.startswith("cuda"):
        for v in variants:
            measure_cuda_peak(torch, v, ids, dev)
    elif not args.no_memory_pass and cpu_peak_supported():
        glibc = Glibc()
        if glibc.return_freed_memory():
            for _ in range(2):
                for v in variants:
                    measure_cpu_peak(torch, v, ids, glibc)
        else:
            log("memory: glibc not found; no CPU step-peak figure")
    return env, variants


def _has_sdpa(torch):
    return hasattr(torch.nn.functional, "scaled_dot_product_attention")


# ---- report -------------------------------------------------------------------------------


def summary(v):
    t = sorted(v.times_ms)
    out = {"median_ms": statistics.median(t) if t else float("nan"),
           "min_ms": t[0] if t else float("nan"), "max_ms": t[-1] if t else float("nan")}
    if v.phase_ms:
        for i, name in enumerate(("forward", "backward", "optimizer")):
            out[name + "_median_ms"] = statistics.median(p[i] for p in v.phase_ms)
    return out


def peak_of(v):
    return v.mem.get("cuda_peak_bytes", v.mem.get("cpu_peak_bytes"))


def training_state(v):
    return v.mem["saved_bytes"] + v.mem["grad_bytes"] + v.mem["optimizer_bytes"]


def paired_speedup(ref, v):
    """Median over repetitions of ref's time / v's time in the same round (robust to load drifting between rounds)."""
    rs = [a / b for a, b in zip(ref.times_ms, v.times_ms) if b > 0]
    return statistics.median(rs) if rs else None


def ratio(a, b):
    if a is None or b is None or not b or not math.isfinite(a) or not math.isfinite(b):
        return None
    return a / b


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def fmt_mib(b):
    return "n/a" if b is None else f"{b / MiB:,.1f}"


def tables(env, variants, args):
    """Two markdown tables: time and parameters, memory. Ratios are 'how many times better than'."""
    by = {v.name: v for v in variants}
    s = {v.name: summary(v) for v in variants}
    cuda = args.device.startswith("cuda")
    lines = []
    lines.append("| variant | trainable params | step time, median (min-max) | speed-up vs full | speed-up vs LoRA | peak memory, MiB | memory: full / this | memory: LoRA / this |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for v in variants:
        m = s[v.name]
        sp_full = paired_speedup(by["full"], v) if "full" in by else None
        sp_lora = paired_speedup(by["lora"], v) if "lora" in by else None
        pk = peak_of(v)
        mr_full = ratio(peak_of(by["full"]), pk) if "full" in by else None
        mr_lora = ratio(peak_of(by["lora"]), pk) if "lora" in by else None
        label = {"full": "full fine-tuning", "lora": f"LoRA r={v.info.get('r')}", "s2ft": "S²FT"}[v.name]
        lines.append(f"| {label} | {v.info['trainable']:,} | {m['median_ms']:.1f} ms ({m['min_ms']:.1f}-{m['max_ms']:.1f}) | "
                     f"{fmt_ratio(sp_full)} | {fmt_ratio(sp_lora)} | {fmt_mib(pk)} | {fmt_ratio(mr_full)} | {fmt_ratio(mr_lora)} |")
    if all(v.phase_ms for v in variants):
        lines.append("")
        lines.append("| variant | forward, median | backward, median | optimizer step, median | backward: full / this |")
        lines.append("|---|---|---|---|---|")
        for v in variants:
            m = s[v.name]
            bw = ratio(s["full"]["backward_median_ms"], m["backward_median_ms"]) if "full" in by else None
            lines.append(f"| {v.name} | {m['forward_median_ms']:.1f} ms | {m['backward_median_ms']:.1f} ms | "
                         f"{m['optimizer_median_ms']:.1f} ms | {fmt_ratio(bw)} |")
    lines.append("")
    peak_label = "CUDA peak (own)" if cuda else "step peak RSS growth"
    lines.append(f"| variant | saved activations | gradients | optimizer state | training state (sum) | training state: full / this | training state: LoRA / this | weights | {peak_label} |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for v in variants:
        mem = v.mem
        ts = training_state(v)
        tr_full = ratio(training_state(by["full"]), ts) if "full" in by else None
        tr_lora = ratio(training_state(by["lora"]), ts) if "lora" in by else None
        extra = mem.get("cuda_peak_bytes") if cuda else mem.get("cpu_step_growth_bytes")
        lines.append(f"| {v.name} | {fmt_mib(mem['saved_bytes'])} | {fmt_mib(mem['grad_bytes'])} | {fmt_mib(mem['optimizer_bytes'])} | "
                     f"{fmt_mib(ts)} | {fmt_ratio(tr_full)} | {fmt_ratio(tr_lora)} | {fmt_mib(mem['weight_bytes'])} | {fmt_mib(extra)} |")
    lines.append("")
    lines.append("(speed-up: median over the rounds of the two variants' times in the same round. "
                 "memory in MiB. peak memory: " + (
        "torch.cuda.max_memory_allocated during one step, less the other variants' resident tensors"
        if cuda else "weights + optimizer state + the measured growth of peak RSS during one step") + ")")
    return "\n".join(lines)


def json_lines(env, variants, args):
    out = []
    by = {v.name: v for v in variants}
    for v in variants:
        paired = {f"speedup_vs_{r}": paired_speedup(by[r], v) for r in ("full", "lora") if r in by}
        rec = {"bench": "train_step", "variant": v.name, "note": v.note, "device": args.device,
               "dtype": args.dtype, "config": env["config"], "machine": env["machine"],
               "versions": env["versions"], "reps": args.reps, "warmup": args.warmup,
               "times_ms": v.times_ms, **summary(v), **paired, **v.mem,
               **{k: val for k, val in v.info.items()}}
        out.append(rec)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_model_args(p)
    add_run_args(p)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    env, variants = run(args)
    print()
    print(tables(env, variants, args))
    print(f"\n({args.reps} timed repetitions per variant after {args.warmup} warm-up, interleaved; "
          f"whole run {time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "a") as f:
            for rec in json_lines(env, variants, args):
                f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
