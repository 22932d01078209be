#!/usr/bin/env python3
"""The S2FT paper's Fig. 5 setting on one GPU: a training step of a LLaMA-2-7B-shaped model.

Full fine-tuning vs PEFT LoRA (r = 32 on q, k, v, up, down) vs S2FT through
s2ft.torch (5% of attention heads in o_proj, 2% of FFN channels in down_proj):
peak CUDA memory and time per step (forward with labels, backward, AdamW
step), the three variants interleaved in one process (bench/python/train_step.py
does the work; this program picks the setting, the depth and the report).

Model: d_model 4096, 32 heads x 128, d_ff 11008, vocab 32000, untied head,
random weights, 512 tokens, batch 1, bf16 throughout. All three variants use
torch.optim.AdamW over their trainable parameters, whose state PyTorch keeps
in the parameter's dtype: bf16 for full fine-tuning and S2FT's slices; PEFT
makes LoRA's adapters fp32 (autocast_adapter_dtype), so their state is fp32.
AdamW is PyTorch's fused kernel for full fine-tuning and LoRA (no temporaries:
the strongest baseline; the default foreach step would add a temporary of the
state's size to full fine-tuning's peak) and the default (foreach) for S2FT,
whose slices are column views that the fused kernel does not take
(--adamw-impl best).

Depth. LLaMA-2-7B's 32 layers hold 6.74 B parameters: full fine-tuning with
bf16 weights, gradients and AdamW states needs 8 bytes per parameter (54 GB;
with fp32 states it would be 81 GB, more than an 80 GB H100 before any
activation), and the interleaved run keeps all three models on the device at
once (2 more bytes per parameter each for the LoRA and S2FT models). So
--layers auto measures the 32-layer model directly where that fits in 90% of
the device's memory (an H200's 141 GB), and otherwise (an H100's 80 GB)
measures 4 and 8 layers and extrapolates time and memory linearly in the
depth to 32 layers (every layer is the same shape, so both are an affine
function of the depth: embeddings, head and loss fixed, the rest per layer);
the report says which.

Targets (the issue's): S2FT at least 3x less peak memory and 2x faster than
full fine-tuning, and better than LoRA on both. Reported as measured, PASS
or MISS.

Writes fig5.md (the report) and fig5.jsonl (one JSON line per variant and
depth) under --out (default $OUT, else ./fig5-out), and logs to stdout.

  python3 bench/python/gpu_fig5.py                 # on the GPU machine
  python3 bench/python/gpu_fig5.py --dry-run       # the same logic on CPU, tiny model
"""
import argparse
import gc
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step as ts  # noqa: E402

TARGET_LAYERS = 32
GiB = 2.0**30


def params_of(a, layers):
    d, f, v = a.d_model, a.d_ff, a.vocab
    kv = (a.kv_heads or a.heads) * (d // a.heads)
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
    return layers * per_layer + 2 * v * d + d


def resident_bytes(a, layers):
    """Bytes the interleaved run keeps on the device, before activations (bf16 throughout)."""
    p = params_of(a, layers)
    full = p * (2 + 2 + 2 + 2)  # weights, gradients, AdamW m and v
    frozen = 2 * p * 2          # the LoRA and S2FT models' weights
    return full + frozen


def choose_layers(torch, a, log):
    if a.layers != "auto":
        return [int(x) for x in a.layers.split(",")]
    if not a.device.startswith("cuda"):
        return [2]
    total = torch.cuda.get_device_properties(torch.device(a.device)).total_memory
    need = resident_bytes(a, TARGET_LAYERS) + 10 * GiB  # activations and workspace: a few GB at 512 tokens
    log(f"depth: {TARGET_LAYERS} layers = {params_of(a, TARGET_LAYERS) / 1e9:.2f} B parameters; the interleaved run "
        f"needs about {need / GiB:.0f} GiB (full FT 8 bytes/param in bf16 + two frozen bf16 models + 10 GiB); "
        f"device has {total / GiB:.0f} GiB")
    if need <= 0.9 * total:
        return [TARGET_LAYERS]
    log(f"depth: does not fit in 90% of the device; measuring 4 and 8 layers and extrapolating to {TARGET_LAYERS}")
    return [4, 8]


def extrapolate(x1, y1, x2, y2, x):
    if y1 is None or y2 is None:
        return None
    return y2 + (x - x2) * (y2 - y1) / (x2 - x1)


def fig_rows(depth_results, target):
    """{variant: {'ms', 'peak', 'trainable', 'how'}} at the target depth, measured or extrapolated."""
    if target in depth_results:
        env, vs = depth_results[target]
        return {v.name: {"ms": ts.summary(v)["median_ms"], "peak": ts.peak_of(v), "trainable": v.info["trainable"],
                         "how": f"measured at {target} layers"} for v in vs}, "measured"
    depths = sorted(depth_results)
    if len(depths) < 2:
        d = depths[-1]
        env, vs = depth_results[d]
        return {v.name: {"ms": ts.summary(v)["median_ms"], "peak": ts.peak_of(v), "trainable": v.info["trainable"],
                         "how": f"measured at {d} layers (not extrapolated: one depth)"} for v in vs}, f"{d} layers"
    d1, d2 = depths[-2], depths[-1]
    v1 = {v.name: v for v in depth_results[d1][1]}
    v2 = {v.name: v for v in depth_results[d2][1]}
    rows = {}
    for name in v2:
        a, b = v1[name], v2[name]
        rows[name] = {
            "ms": extrapolate(d1, ts.summary(a)["median_ms"], d2, ts.summary(b)["median_ms"], target),
            "peak": extrapolate(d1, ts.peak_of(a), d2, ts.peak_of(b), target),
            "trainable": int(round(extrapolate(d1, a.info["trainable"], d2, b.info["trainable"], target))),
            "how": f"extrapolated from {d1} and {d2} layers",
        }
    return rows, f"extrapolated from {d1} and {d2} layers"


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def report(a, depth_results, log_lines):
    lines = ["# S²FT Fig. 5 setting: one training step, LLaMA-2-7B shape", ""]
    any_env = next(iter(depth_results.values()))[0]
    lines.append(f"- machine: {any_env['machine']}")
    lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in any_env["versions"].items()))
    lines.append(f"- model: {any_env['config']} (the depth of each section below), attention {any_env['attention']}")
    lines.append(f"- depths measured: {', '.join(str(d) for d in sorted(depth_results))} layers; "
                 f"{a.reps} timed steps per variant after {a.warmup} warm-up, interleaved round-robin; medians")
    lines.append("- precision: bf16 weights, activations and gradients; torch.optim.AdamW, state in the parameter's "
                 "dtype (bf16 for full FT and S²FT; PEFT's adapters are fp32, so LoRA's state is fp32); "
                 "the AdamW implementation of each variant is listed with it")
    lines.append("- peak memory: torch.cuda.max_memory_allocated during one step, less what the other two "
                 "variants' models hold (all three are resident): weights + gradients + optimizer state + "
                 "activations + temporaries of this variant")
    lines.append("")
    for d in sorted(depth_results):
        env, vs = depth_results[d]
        lines.append(f"## measured, {d} layers")
        lines.append("")
        for v in vs:
            lines.append(f"- {v.name}: {v.info['trainable']:,} trainable, AdamW {v.info.get('adamw')}: {v.note}")
        lines.append("")
        lines.append(ts.tables(env, vs, a))
        lines.append("")
    rows, how = fig_rows(depth_results, TARGET_LAYERS)
    lines.append(f"## at {TARGET_LAYERS} layers ({how})")
    lines.append("")
    lines.append("| variant | trainable params | ms/step | peak memory, GiB | speed-up vs full | memory: full / this | speed-up vs LoRA | memory: LoRA / this |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for name in ("full", "lora", "s2ft"):
        if name not in rows:
            continue
        r = rows[name]
        f, l = rows.get("full"), rows.get("lora")
        cells = [
            ts.fmt_ratio(ts.ratio(f["ms"], r["ms"])) if f else "n/a",
            ts.fmt_ratio(ts.ratio(f["peak"], r["peak"])) if f else "n/a",
            ts.fmt_ratio(ts.ratio(l["ms"], r["ms"])) if l else "n/a",
            ts.fmt_ratio(ts.ratio(l["peak"], r["peak"])) if l else "n/a",
        ]
        peak = "n/a" if r["peak"] is None else f"{r['peak'] / GiB:.2f}"
        lines.append(f"| {name} | {r['trainable']:,} | {r['ms']:.1f} | {peak} | " + " | ".join(cells) + " |")
    lines.append("")
    s, f, l = rows.get("s2ft"), rows.get("full"), rows.get("lora")
    if s:
        mem_full = ts.ratio(f["peak"], s["peak"]) if f else None
        spd_full = ts.ratio(f["ms"], s["ms"]) if f else None
        mem_lora = ts.ratio(l["peak"], s["peak"]) if l else None
        spd_lora = ts.ratio(l["ms"], s["ms"]) if l else None
        lines.append("| target | measured | verdict |")
        lines.append("|---|---|---|")
        lines.append(f"| memory: full FT / S²FT ≥ 3 | {ts.fmt_ratio(mem_full)} | {verdict(None if mem_full is None else mem_full >= 3)} |")
        lines.append(f"| time: full FT / S²FT ≥ 2 | {ts.fmt_ratio(spd_full)} | {verdict(None if spd_full is None else spd_full >= 2)} |")
        lines.append(f"| memory: LoRA / S²FT > 1 | {ts.fmt_ratio(mem_lora)} | {verdict(None if mem_lora is None else mem_lora > 1)} |")
        lines.append(f"| time: LoRA / S²FT > 1 | {ts.fmt_ratio(spd_lora)} | {verdict(None if spd_lora is None else spd_lora > 1)} |")
        lines.append("")
    lines.append("## log")
    lines.append("")
    lines.append("```")
    lines.extend(log_lines)
    lines.append("```")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ts.add_model_args(p, d_model=4096, layers="auto", heads=32, d_ff=11008, vocab=32000, tokens=512, layers_type=str,
                      layers_help="'auto' (32 where it fits, else 4 and 8 extrapolated) or depths, e.g. 8 or 4,8")
    ts.add_run_args(p, reps=10, warmup=2)
    p.set_defaults(device="cuda", lora_r="32", lora_targets="qkvud", adamw_impl="best")
    p.add_argument("--out", default=os.environ.get("OUT") or "fig5-out", help="folder for fig5.md and fig5.jsonl")
    p.add_argument("--dry-run", action="store_true",
                   help="exercise the logic on CPU: a tiny bf16 model (d_model 256, 4 heads, d_ff 688, vocab 1024, "
                        "64 tokens), depths 1 and 2 extrapolated to 32, 2 repetitions")
    a = p.parse_args(argv)
    if a.dry_run:
        a.device, a.d_model, a.heads, a.d_ff, a.vocab, a.tokens = "cpu", 256, 4, 688, 1024, 64
        a.layers = "1,2" if a.layers == "auto" else a.layers
        a.reps, a.warmup = min(a.reps, 2), 1
        a.lora_r = "4"
        a.dtype = a.dtype or "bf16"
        a.o_ratio = max(a.o_ratio, 0.25)  # one of 4 heads
    os.makedirs(a.out, exist_ok=True)
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    torch = ts.import_torch()
    t0 = time.perf_counter()
    depths = choose_layers(torch, a, log)
    results = {}
    jsonl = os.path.join(a.out, "fig5.jsonl")
    open(jsonl, "w").close()
    for d in depths:
        args = argparse.Namespace(**vars(a))
        args.layers = d
        log(f"== {d} layers")
        try:
            env, variants = ts.run(args, log=log)
        except SystemExit as e:  # a failed correctness check or a missing package
            log(f"{d} layers: failed: {e}")
            break
        except Exception as e:  # CUDA out of memory, a libs2ft error, ...: report, keep what was measured
            log(f"{d} layers: failed: {e.__class__.__name__}: {e}")
            log(traceback.format_exc().rstrip())
            break
        results[d] = (env, variants)
        log(ts.tables(env, variants, args))
        with open(jsonl, "a") as f:
            for rec in ts.json_lines(env, variants, args):
                rec["bench"] = "gpu_fig5"
                rec["layers"] = d
                rec.pop("times_ms", None)
                f.write(json.dumps(rec) + "\n")
        # Free this depth's models before the next one.
        for v in variants:
            v.opt = None
            v.model = None
        del variants
        gc.collect()
        if a.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if not results:
        with open(os.path.join(a.out, "fig5.md"), "w") as f:
            f.write("# S²FT Fig. 5 setting: no result\n\n```\n" + "\n".join(log_lines) + "\n```\n")
        print("no depth was measured", file=sys.stderr)
        return 1
    log(f"total {time.perf_counter() - t0:.0f} s")
    text = report(a, results, log_lines)
    with open(os.path.join(a.out, "fig5.md"), "w") as f:
        f.write(text)
    print()
    print(text.split("## log")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
