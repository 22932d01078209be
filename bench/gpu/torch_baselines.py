#!/usr/bin/env python3
"""PyTorch and PEFT baselines for libs2ft's GPU benchmarks (bench/gpu/run_h200.sh).

Run on the same GPU as s2ft-bench-gpu; each result is one JSON line appended to
--json (bench/gpu/report.py puts them next to the library's numbers) and a
table row on stdout.

  backward_torch  PyTorch's full backward of nn.Linear (bf16, no bias) at the
                  LLaMA-2-7B shapes, T tokens: dx = dy W and dW = dy^T x, as
                  autograd runs it (torch.autograd.grad of the layer output).
  switch_torch    switching LoRA adapters on a 7B-shaped model (--layers blocks
                  of o_proj [4096, 4096] and down_proj [4096, 11008], bf16),
                  at the parameter count of the S2FT switch (O: 5% of heads =
                  256 columns -> r = 128; DOWN: 2% of channels = 220 columns
                  -> r = 60, from r (out + in) = k out):
                    peft   PEFT: unmerge_adapter(), set_adapter(), merge_adapter()
                    addmm  the same as two in-place W.addmm_(B, A) per weight
                           (unmerge with alpha -1), the fastest dense merge.
                  Also whether PEFT's unmerge restores the bf16 base exactly.

Times are CUDA events around each call on a non-default stream, after warm-up,
medians. Random data throughout (never zeros).
"""
import argparse
import json
import statistics
import sys


def emit(fp, obj):
    if fp is not None:
        fp.write(json.dumps(obj) + "\n")
        fp.flush()


def time_cuda(torch, fn, warmup, reps):
    """Median and minimum milliseconds of fn() over reps, events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for i in range(reps):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    return statistics.median(ms), min(ms)


def uniform(torch, shape, scale=1.0):
    """bf16 values uniform in [-scale, scale) on the GPU."""
    return (torch.rand(*shape, device="cuda", dtype=torch.float32) * 2.0 - 1.0).mul_(scale).to(torch.bfloat16)


BACKWARD_CASES = [  # (case, weights, out, in), as in s2ft-bench-gpu's backward section
    ("o_proj", "q/k/v/o", 4096, 4096),
    ("v_proj", "q/k/v/o", 4096, 4096),
    ("up_proj", "gate/up", 11008, 4096),
    ("down_proj", "down", 4096, 11008),
]


def bench_backward(torch, args, fp):
    tokens = args.tokens
    print(f"\n== backward_torch: nn.Linear full backward, bf16, T = {tokens}, median ms")
    print(f"  {'W':>12} {'cases':<18} {'ms':>9} {'TFLOP/s':>8}")
    shapes = {}
    for case, _, out, inp in BACKWARD_CASES:
        shapes.setdefault((out, inp), []).append(case)
    for (out, inp), cases in shapes.items():
        lin = torch.nn.Linear(inp, out, bias=False, device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            lin.weight.copy_(uniform(torch, (out, inp), 0.02))
        x = uniform(torch, (tokens, inp)).requires_grad_()
        y = lin(x)
        dy = uniform(torch, (tokens, out))

        def step():
            torch.autograd.grad(y, (x, lin.weight), dy, retain_graph=True)

        dx, dw = torch.autograd.grad(y, (x, lin.weight), dy, retain_graph=True)
        written = bool(torch.isfinite(dx).all().item() and torch.isfinite(dw).all().item())
        med, mn = time_cuda(torch, step, 3, args.reps)
        tflops = 4.0 * tokens * out * inp / (med * 1e-3) * 1e-12
        print(f"  {out:>5}x{inp:<6} {','.join(cases):<18} {med:9.3f} {tflops:8.0f}")
        emit(fp, {"bench": "backward_torch", "out": out, "in": inp, "tokens": tokens, "cases": cases,
                  "dtype": "bf16", "torch_full_ms": med, "torch_full_min_ms": mn, "torch_full_tflops": tflops,
                  "outputs_finite": written,
                  "bf16_reduced_precision_reduction":
                      bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction)})
        del lin, x, y, dy, dx, dw
        torch.cuda.empty_cache()


def lora_ranks():
    d, heads, head_dim, ff = 4096, 32, 128, 11008
    k_o = max(1, round(0.05 * heads)) * head_dim      # 256 columns of O
    k_down = max(1, round(0.02 * ff))                 # 220 columns of DOWN
    r_o = round(k_o * d / (d + heads * head_dim))     # 128
    r_down = round(k_down * d / (d + ff))             # 60
    return d, ff, k_o, k_down, r_o, r_down


def bench_switch_peft(torch, args, fp):
    from torch import nn
    import peft
    from peft import LoraConfig, get_peft_model

    d, ff, k_o, k_down, r_o, r_down = lora_ranks()
    layers = args.layers

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.o_proj = nn.Linear(d, d, bias=False, device="cuda", dtype=torch.bfloat16)
            self.down_proj = nn.Linear(ff, d, bias=False, device="cuda", dtype=torch.bfloat16)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block() for _ in range(layers)])

        def forward(self, x):
            return x

    model = Model()
    cfg = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["o_proj", "down_proj"],
               rank_pattern={"o_proj": r_o, "down_proj": r_down},
               alpha_pattern={"o_proj": 2 * r_o, "down_proj": 2 * r_down},
               init_lora_weights=False)  # random A and B: never time zeros
    try:  # keep the adapters in bf16 like the base (PEFT casts them to f32 by default)
        pm = get_peft_model(model, LoraConfig(**cfg), adapter_name="A", autocast_adapter_dtype=False)
    except TypeError:  # an older PEFT without the argument
        pm = get_peft_model(model, LoraConfig(**cfg), adapter_name="A")
    pm.add_adapter("B", LoraConfig(**cfg))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_" in n:
                p.data = p.data.to(torch.bfloat16)
    tuner = pm.base_model  # the LoraModel
    lora_dtypes = sorted({str(p.dtype) for n, p in pm.named_parameters() if "lora_" in n})
    lora_params = sum(p.numel() for n, p in pm.named_parameters() if n.endswith(".A.weight"))
    s2ft_params = layers * d * (k_o + k_down)
    base0 = tuner.model.layers[0].down_proj.base_layer.weight
    base0_copy = base0.detach().clone()

    state = {"cur": "A"}
    tuner.set_adapter("A")
    tuner.merge_adapter()

    def switch():
        nxt = "B" if state["cur"] == "A" else "A"
        tuner.unmerge_adapter()
        tuner.set_adapter(nxt)
        tuner.merge_adapter()
        state["cur"] = nxt

    med, mn = time_cuda(torch, switch, 2, args.switch_reps)
    tuner.unmerge_adapter()
    torch.cuda.synchronize()
    exact = bool(torch.equal(base0, base0_copy))
    max_diff = float((base0.float() - base0_copy.float()).abs().max().item())
    print(f"  {'peft':<8} {med:10.3f} {mn:10.3f}   unmerge restores the bf16 base: "
          f"{'exactly' if exact else f'no (max |diff| {max_diff:.3g})'}")
    emit(fp, {"bench": "switch_torch", "case": "peft", "layers": layers, "dtype": "bf16", "r_o": r_o,
              "r_down": r_down, "lora_params": lora_params, "s2ft_params": s2ft_params, "ms": med, "min_ms": mn,
              "unmerge_restores_base_exactly": exact, "unmerge_max_abs_diff": max_diff, "lora_dtypes": lora_dtypes,
              "peft_version": getattr(peft, "__version__", "?")})
    del pm, tuner, model, base0, base0_copy
    torch.cuda.empty_cache()


def bench_switch_addmm(torch, args, fp):
    d, ff, _, _, r_o, r_down = lora_ranks()
    layers = args.layers
    weights, factors = [], []
    for _ in range(layers):
        for out, inp, r in ((d, d, r_o), (d, ff, r_down)):
            weights.append(uniform(torch, (out, inp), 0.02))
            # (B, A) of adapters A and B: B [out, r], A [r, in]
            factors.append([(uniform(torch, (out, r), 0.01), uniform(torch, (r, inp), 0.01)) for _ in range(2)])
    state = {"cur": 0}

    def switch():
        old, new = state["cur"], 1 - state["cur"]
        for w, f in zip(weights, factors):
            w.addmm_(f[old][0], f[old][1], alpha=-1.0)
            w.addmm_(f[new][0], f[new][1])
        state["cur"] = new

    med, mn = time_cuda(torch, switch, 2, args.switch_reps)
    print(f"  {'addmm':<8} {med:10.3f} {mn:10.3f}")
    emit(fp, {"bench": "switch_torch", "case": "addmm", "layers": layers, "dtype": "bf16", "r_o": r_o,
              "r_down": r_down, "ms": med, "min_ms": mn})
    del weights, factors
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="append one JSON object per result to this file")
    ap.add_argument("--only", default="backward,switch", help="comma-separated: backward,switch")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--switch-reps", type=int, default=10)
    args = ap.parse_args()
    print("command: " + " ".join(sys.argv))
    fp = open(args.json, "a", encoding="utf-8") if args.json else None
    rc = 0
    try:
        import torch
    except ImportError as e:
        print(f"no PyTorch: {e}")
        emit(fp, {"bench": "torch_env", "error": f"no PyTorch: {e}"})
        return 1
    if not torch.cuda.is_available():
        print("no CUDA device visible to PyTorch")
        emit(fp, {"bench": "torch_env", "error": "no CUDA device visible to PyTorch"})
        return 1
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    env = {"bench": "torch_env", "torch": torch.__version__, "cuda": torch.version.cuda,
           "device": torch.cuda.get_device_name(0), "peft": peft_version}
    print(json.dumps(env))
    emit(fp, env)
    torch.manual_seed(0)
    only = set(args.only.split(","))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        if "backward" in only:
            try:
                bench_backward(torch, args, fp)
            except Exception as e:  # report and go on with the next section
                print(f"backward_torch failed: {e!r}")
                emit(fp, {"bench": "backward_torch", "error": repr(e)})
                rc = 1
        if "switch" in only:
            print(f"\n== switch_torch: LoRA switch on a 7B-shaped model, {args.layers} layers, bf16, median ms")
            print(f"  {'case':<8} {'median':>10} {'min':>10}")
            for name, fn in (("peft", bench_switch_peft), ("addmm", bench_switch_addmm)):
                try:
                    fn(torch, args, fp)
                except Exception as e:
                    print(f"  {name} failed: {e!r}")
                    emit(fp, {"bench": "switch_torch", "case": name, "error": repr(e)})
                    rc = 1
                    torch.cuda.empty_cache()
    if fp is not None:
        fp.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
