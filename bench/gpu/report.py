#!/usr/bin/env python3
"""Turns the JSON lines of s2ft-bench-gpu and torch_baselines.py into one
Markdown report: a table per benchmark with the library, its baseline and
their ratio side by side, each target marked PASS or MISS, and every error.

  python3 bench/gpu/report.py results.jsonl [--steps steps.log] [--out report.md]

Missing numbers (a variant that failed, a baseline that did not run) show as
"n/a"; nothing is filled in or estimated.
"""
import argparse
import json
import sys

CHECK_TOL = 1e-2  # bf16 outputs against f32 references: relative to the largest |reference|


def load(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                rows.append({"bench": "report", "error": f"{path}:{n}: not JSON ({e})"})
    return rows


def num(v, fmt="{:.3f}"):
    return "n/a" if v is None else fmt.format(v)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def check_mark(*diffs):
    """Worst relative difference of the outputs that were checked."""
    vals = [d for d in diffs if d is not None]
    if not vals:
        return "n/a"
    worst = max(vals)
    return "ok" if worst <= CHECK_TOL else f"FAIL ({worst:.2g})"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def report(rows, steps):
    by = {}
    for r in rows:
        by.setdefault(r.get("bench"), []).append(r)
    out = ["# libs2ft CUDA backend: benchmark report", ""]
    env = next((r for r in by.get("env", []) if "device" in r), None)
    tenv = next((r for r in by.get("torch_env", []) if "torch" in r), None)
    if env:
        out.append(f"Device: {env.get('device')} (cc {env.get('cc')}, {env.get('sm_count')} SMs), CUDA driver "
                   f"{env.get('cuda_driver')}, runtime {env.get('cuda_runtime')}, libs2ft {env.get('libs2ft')}.")
        out.append(f"Command: `{env.get('command')}`")
    if tenv:
        out.append(f"PyTorch {tenv.get('torch')} (CUDA {tenv.get('cuda')}), PEFT {tenv.get('peft')}.")
    ceil = next((r for r in by.get("ceilings", []) if "copy_gbps_rw" in r), None)
    if ceil:
        out.append(f"Ceilings measured in the run: device-to-device copy {ceil['copy_gbps_rw']:.0f} GB/s "
                   f"(read + written), bf16 GEMM {ceil['gemm_n']}^3 {ceil['gemm_tflops']:.0f} TFLOP/s.")
    out.append("")

    # ---- backward
    bw = [r for r in by.get("backward", []) if "case" in r and "error" not in r]
    torch_bw = {(r.get("out"), r.get("in")): r for r in by.get("backward_torch", []) if "torch_full_ms" in r}
    if bw:
        t = bw[0]
        out.append(f"## Partial vs full backward (bf16, T = {t.get('tokens')}, dW in {t.get('dw_dtype')})")
        out.append("")
        out.append("full = dx + full dW; partial = dx + dW of k lines (contiguous); index = the same from an "
                   "index list. Floor 2.0x, target >= 1.8x.")
        out.append("")
        rows_ = []
        for r in bw:
            tb = torch_bw.get((r.get("out"), r.get("in")))
            tms = tb.get("torch_full_ms") if tb else None
            rat = r.get("ratio")
            checks = check_mark(r.get("partial_dx_rel_diff"), r.get("partial_dw_rel_diff"),
                                r.get("partial_index_dx_rel_diff"), r.get("partial_index_dw_rel_diff"))
            nonfinite = sum(r.get(f, 0) or 0 for f in ("full_nonfinite", "partial_nonfinite",
                                                       "partial_index_nonfinite"))
            if nonfinite:
                checks = f"FAIL ({nonfinite} NaN/Inf)"
            rows_.append([r["case"], f"{r['out']}x{r['in']}", r.get("axis"), r.get("k"), num(r.get("full_ms")),
                          num(r.get("partial_ms")), num(r.get("partial_index_ms")), num(rat, "{:.2f}x"),
                          num(r.get("ratio_index"), "{:.2f}x"), verdict(None if rat is None else rat >= 1.8),
                          num(tms), num(ratio(tms, r.get("partial_ms")), "{:.2f}x"), checks])
        out.append(table(["case", "W", "slice", "k", "full ms", "partial ms", "index ms", "full/partial",
                          "full/index", ">= 1.8x", "PyTorch full ms", "PyTorch/partial", "outputs"], rows_))
        out.append("")

    # ---- switch
    sw = [r for r in by.get("switch", []) if "layout" in r]
    tsw = {r.get("case"): r for r in by.get("switch_torch", []) if "ms" in r}
    if sw:
        s0 = sw[0]
        out.append(f"## Adapter switch, LLaMA-2-7B shape, {s0.get('layers')} layers, bf16 "
                   f"(O {s0.get('k_o')} + DOWN {s0.get('k_down')} columns per layer)")
        out.append("")
        out.append(f"Floor: {num(s0.get('bytes'), '{:.0f}')} bytes moved over the measured copy bandwidth = "
                   f"{num(s0.get('floor_ms'))} ms; target within 2x. Baselines: LoRA of equal parameter count "
                   f"(r = {tsw.get('peft', tsw.get('addmm', {})).get('r_o', 'n/a')} for O, "
                   f"{tsw.get('peft', tsw.get('addmm', {})).get('r_down', 'n/a')} for DOWN).")
        out.append("")
        peft_ms = tsw.get("peft", {}).get("ms")
        addmm_ms = tsw.get("addmm", {}).get("ms")
        rows_ = []
        for r in sw:
            f = r.get("forced_ms")
            c = r.get("checked_ms")
            rows_.append([r["layout"], num(c), num(f), num(r.get("floor_ms")), num(r.get("forced_over_floor"), "{:.2f}x"),
                          num(r.get("checked_over_floor"), "{:.2f}x"),
                          verdict(None if r.get("forced_over_floor") is None else r["forced_over_floor"] <= 2.0),
                          num(peft_ms), num(ratio(peft_ms, c), "{:.1f}x"), num(addmm_ms), num(ratio(addmm_ms, c), "{:.1f}x"),
                          {True: "yes", False: "NO"}.get(r.get("restore_bit_exact"), "n/a")])
        out.append(table(["layout", "S2FT checked ms", "S2FT forced ms", "floor ms", "forced/floor",
                          "checked/floor", "<= 2x", "PEFT merge+unmerge ms", "PEFT/S2FT", "addmm ms", "addmm/S2FT",
                          "remove restores base"], rows_))
        if "peft" in tsw:
            p = tsw["peft"]
            out.append("")
            out.append(f"PEFT {p.get('peft_version')}: LoRA parameters {p.get('lora_params')} vs S2FT "
                       f"{p.get('s2ft_params')}; adapters in {', '.join(p.get('lora_dtypes', []))}; unmerge restores "
                       f"the bf16 base exactly: {p.get('unmerge_restores_base_exactly')} (max |diff| "
                       f"{num(p.get('unmerge_max_abs_diff'), '{:.3g}')}).")
        out.append("")

    # ---- mixed
    mx = [r for r in by.get("mixed", []) if "mode" in r and "error" not in r]
    if mx:
        m0 = mx[0]
        out.append(f"## Mixed-adapter forward vs LoRA (down_proj {m0.get('out')}x{m0.get('in')}, bf16, "
                   f"k = {m0.get('k')} vs r = {m0.get('lora_r')}: {m0.get('params_s2ft')} vs "
                   f"{m0.get('params_lora')} parameters per adapter)")
        out.append("")
        out.append("One request per adapter; LoRA = the faster of BGMV (two launches) and cuBLAS SGMV, with the "
                   "same cuBLAS base GEMM. Target: S2FT latency at least 22% lower.")
        out.append("")
        rows_ = []
        for r in mx:
            red = r.get("latency_reduction")
            rows_.append([r["mode"], r.get("n_adapters"), r.get("tokens"), num(r.get("s2ft_ms"), "{:.4f}"),
                          num(r.get("lora_bgmv_ms"), "{:.4f}"), num(r.get("lora_sgmv_ms"), "{:.4f}"),
                          num(r.get("s2ft_base_ms"), "{:.4f}"), num(r.get("cublas_base_ms"), "{:.4f}"),
                          num(None if red is None else 100 * red, "{:.1f}%"), verdict(None if red is None else red >= 0.22),
                          check_mark(r.get("s2ft_rel_diff")),
                          check_mark(r.get("lora_bgmv_rel_diff"), r.get("lora_sgmv_rel_diff"))])
        out.append(table(["mode", "adapters", "T", "S2FT ms", "LoRA BGMV ms", "LoRA SGMV ms", "S2FT base-only ms",
                          "cuBLAS base ms", "latency reduction", ">= 22%", "S2FT output", "LoRA output"], rows_))
        out.append("")

    # ---- delta paths
    pt = [r for r in by.get("paths", []) if "case" in r and "error" not in r]
    if pt:
        out.append("## Delta paths of the mixed forward: DENSE (gather + GEMM) vs SPARSE (cuSPARSE SpMM)")
        out.append("")
        rows_ = []
        for r in pt:
            rows_.append([r["case"], r.get("k"), r.get("n_adapters"), r.get("tokens"), num(r.get("base_ms"), "{:.4f}"),
                          num(r.get("dense_ms"), "{:.4f}"), num(r.get("sparse_ms"), "{:.4f}"),
                          num(r.get("auto_ms"), "{:.4f}"), r.get("faster"),
                          check_mark(r.get("dense_rel_diff"), r.get("sparse_rel_diff"), r.get("auto_rel_diff"))])
        out.append(table(["case", "k", "adapters", "T", "base-only ms", "DENSE ms", "SPARSE ms", "AUTO ms", "faster",
                          "outputs"], rows_))
        out.append("")

    # ---- errors
    errs = []
    for r in rows:
        for k, v in r.items():
            if k == "error" or k.endswith("_error"):
                where = "/".join(str(r.get(x)) for x in ("bench", "case", "layout", "mode", "n_adapters", "tokens")
                                 if r.get(x) is not None)
                errs.append(f"- {where}: {k}: {v}")
    if errs:
        out.append("## Errors")
        out.append("")
        out.extend(errs)
        out.append("")
    if steps:
        out.append("## Steps")
        out.append("")
        out.append("```")
        out.append(steps.rstrip())
        out.append("```")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="JSON lines from s2ft-bench-gpu --json and torch_baselines.py --json")
    ap.add_argument("--steps", help="the run script's steps.log, appended verbatim")
    ap.add_argument("--out", help="write the report here too")
    args = ap.parse_args()
    try:
        rows = load(args.results)
    except OSError as e:
        rows = [{"bench": "report", "error": f"cannot read {args.results}: {e}"}]
    steps = ""
    if args.steps:
        try:
            with open(args.steps, encoding="utf-8") as f:
                steps = f.read()
        except OSError:
            steps = ""
    text = report(rows, steps)
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
