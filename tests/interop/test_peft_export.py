"""Adapters exported by `s2ft export --format peft`, loaded by the real PEFT.

For each adapter: `s2ft merge` writes the merged checkpoint and `s2ft export`
the PEFT folder; then PeftModel.from_pretrained(LlamaForCausalLM(base), folder)
must give the merged model's logits (max |a - b| / max |b| <= 1e-5, f32),
merge_and_unload() must give the merged checkpoint's weights (same bound per
tensor), every LoRA module must have rank k and scaling 1, and B A (float64)
must equal the adapter's delta placed on its lines exactly.

Cases:
  synthetic   a random 13-layer LlamaConfig model whose selection trains
              o_proj in layers 1 and 11 with different ranks: rank_pattern
              keys must not match each other's modules (PEFT matches keys as
              regular expressions on the end of the module name).
  stories260k the real stories260K checkpoint (GQA): O, V, DOWN and UP at
              once with scattered lines; a selection trained on a permuted
              checkpoint (s2ft permute, then --inverse); their fusion; an
              export at another scale than the adapter's.
  sorsa       stories260K with a SORSA adapter (low-rank entries, format
              version 4, written here from the format's definition): the
              principal parts of q/down/gate/v weights from a float64 SVD,
              moved as training would; each module has rank 2r with
              lora_B = b and lora_A = a exactly.

usage: test_peft_export.py --s2ft PATH --data DIR --case synthetic|stories260k|sorsa
Exit status 0 pass, 1 fail, 77 skipped (the data of the case is absent).
"""

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

import peft
import transformers
from peft import PeftModel
from transformers import LlamaConfig, LlamaForCausalLM

SKIP = 77
TOLERANCE = 1e-5
TARGET_WEIGHTS = ("self_attn.o_proj", "self_attn.v_proj", "mlp.down_proj", "mlp.up_proj")
COLUMN_TARGETS = ("self_attn.o_proj", "mlp.down_proj")


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def run(s2ft, *args):
    """Runs the tool; a failure shows its stderr."""
    r = subprocess.run([s2ft, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise Failure("s2ft %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r.stdout


def perturbed_copy(src, dst, seed, scale=0.05):
    """dst: the checkpoint folder src with every o/v/down/up weight moved by
    scale * N(0, 1) * the weight's own standard deviation."""
    os.makedirs(dst)
    for name in os.listdir(src):
        if name != "model.safetensors" and os.path.isfile(os.path.join(src, name)):
            shutil.copy(os.path.join(src, name), os.path.join(dst, name))
    tensors = load_torch(os.path.join(src, "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    for name, t in tensors.items():
        if any(name.endswith(w + ".weight") for w in TARGET_WEIGHTS):
            tensors[name] = t + scale * t.std() * torch.randn(t.shape, generator=g, dtype=t.dtype)
    save_torch(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})


def stored_pairs(path, first, second):
    """module name -> (<stem>first, <stem>second) tensors of an s2ft adapter file."""
    tensors = load_numpy(path)
    return {name[: -len(first)]: (t, tensors[name[: -len(first)] + second])
            for name, t in tensors.items() if name.endswith(first)}


def adapter_entries(path):
    """module name -> (lines, delta) of an s2ft adapter file's structured entries."""
    return stored_pairs(path, ".s2ft_lines", ".s2ft_delta")


def low_rank_entries(path):
    """module name -> (b, a) of an s2ft adapter file's low-rank entries."""
    return stored_pairs(path, ".s2ft_low_rank_b", ".s2ft_low_rank_a")


def load_model(path):
    return LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")


def max_rel(a, b):
    a, b = a.double(), b.double()
    den = b.abs().max().item()
    return (a - b).abs().max().item() / (den if den > 0 else 1.0)


class Messages(logging.Handler):
    """Collects WARNING and above from the transformers and peft loggers."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def check_export(label, s2ft, base, adapter, work, tokens, scale=None):
    """Merges and exports `adapter` (at `scale`, or its default scale), loads
    the export with PEFT and compares. Returns the measured errors."""
    merged = os.path.join(work, label + "-merged")
    exported = os.path.join(work, label + "-peft")
    run(s2ft, "merge", base, adapter if scale is None else "%s:%r" % (adapter, scale), "-o", merged)
    extra = [] if scale is None else ["--scale", repr(scale)]
    run(s2ft, "export", "--format", "peft", adapter, "--base", base, "-o", exported, *extra)
    with open(os.path.join(exported, "adapter_config.json")) as f:
        config = json.load(f)
    entries = adapter_entries(adapter)
    low_rank = low_rank_entries(adapter)
    factor_scale = 1.0 if scale is None else scale
    if scale is None:
        meta = load_numpy_metadata(adapter)
        factor_scale = float(meta["default_scale"])

    # The config: exactly the modules with an entry, each with rank = alpha = k.
    modules = sorted(list(entries) + list(low_rank))
    check(sorted(config["target_modules"]) == modules, "%s: target_modules %s" % (label, config["target_modules"]))
    ranks = {m[len("model."):]: int(len(lines)) for m, (lines, _) in entries.items()}
    ranks.update({m[len("model."):]: int(b.shape[1]) for m, (b, _) in low_rank.items()})
    check(config["rank_pattern"] == ranks, "%s: rank_pattern %s, adapter ranks %s" % (label, config["rank_pattern"], ranks))
    check(config["alpha_pattern"] == ranks, "%s: alpha_pattern %s" % (label, config["alpha_pattern"]))
    check(config["r"] == max(ranks.values()) == config["lora_alpha"], "%s: r %s" % (label, config["r"]))

    # B A in float64 against the delta placed on its lines: exact.
    lora = load_torch(os.path.join(exported, "adapter_model.safetensors"))
    check(len(lora) == 2 * len(modules), "%s: %d tensors for %d modules" % (label, len(lora), len(modules)))
    # A low-rank entry's factors are the module's: B = f32(scale * b), A = a.
    for module, (b, a) in low_rank.items():
        want_b = torch.from_numpy((factor_scale * b.astype(np.float64)).astype(np.float32))
        check(torch.equal(lora["base_model.model.%s.lora_B.weight" % module], want_b), "%s: lora_B of %s" % (label, module))
        check(torch.equal(lora["base_model.model.%s.lora_A.weight" % module], torch.from_numpy(a)),
              "%s: lora_A of %s" % (label, module))
    for module, (lines, delta) in entries.items():
        a32 = lora["base_model.model.%s.lora_A.weight" % module]
        b32 = lora["base_model.model.%s.lora_B.weight" % module]
        check(a32.dtype == b32.dtype == torch.float32, "%s: %s is not F32" % (label, module))
        a, b = a32.double(), b32.double()
        factor = torch.from_numpy((factor_scale * delta.astype(np.float64)).astype(np.float32)).double()
        want = torch.zeros(b.shape[0], a.shape[1], dtype=torch.float64)
        idx = torch.from_numpy(lines.astype(np.int64))
        if module.endswith(COLUMN_TARGETS):
            want[:, idx] = factor
        else:
            want[idx, :] = factor
        got = b @ a
        check(torch.equal(got, want), "%s: B A of %s differs from the delta in %d elements"
              % (label, module, int((got != want).sum())))

    # PEFT over the base: the merged model's logits, without warnings.
    handler = Messages()
    loggers = [logging.getLogger("peft"), logging.getLogger("transformers")]
    for lg in loggers:
        lg.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(load_model(base), exported)
    for lg in loggers:
        lg.removeHandler(handler)
    said = [str(w.message) for w in caught] + handler.records
    check(not said, "%s: loading the export warned: %s" % (label, said))
    model.eval()
    injected = {}
    for name, module in model.named_modules():
        if isinstance(module, peft.tuners.lora.LoraLayer):
            injected[name[len("base_model.model."):]] = module
    check(sorted(injected) == modules, "%s: PEFT put LoRA on %s" % (label, sorted(injected)))
    for name, module in injected.items():
        check(module.r["default"] == ranks[name[len("model."):]], "%s: %s has rank %d" % (label, name, module.r["default"]))
        check(module.scaling["default"] == 1.0, "%s: %s has scaling %r" % (label, name, module.scaling["default"]))

    reference = load_model(merged)
    reference.eval()
    with torch.no_grad():
        got = model(tokens).logits
        want = reference(tokens).logits
    logits_err = max_rel(got, want)
    check(logits_err <= TOLERANCE, "%s: logits differ by %.3g (relative)" % (label, logits_err))

    # merge_and_unload: the merged checkpoint's weights.
    unloaded = model.merge_and_unload().state_dict()
    merged_tensors = load_torch(os.path.join(merged, "model.safetensors"))
    weight_err, exact, compared = 0.0, 0, 0
    for name, t in merged_tensors.items():
        check(name in unloaded, "%s: merge_and_unload has no %s" % (label, name))
        err = max_rel(unloaded[name], t)
        weight_err = max(weight_err, err)
        exact += int(torch.equal(unloaded[name], t))
        compared += 1
    check(weight_err <= TOLERANCE, "%s: merged weights differ by %.3g (relative)" % (label, weight_err))
    print("  %-22s %3d modules, ranks %3d..%-3d  logits max rel err %.3g  weights max rel err %.3g "
          "(%d/%d tensors bit-exact)" % (label, len(modules), min(ranks.values()), max(ranks.values()),
                                          logits_err, weight_err, exact, compared))
    return logits_err, weight_err


def load_numpy_metadata(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))["__metadata__"]


def synthetic_case(s2ft, work):
    """13 layers; the global weight-norm selection trains o_proj in layer 11
    (both KV groups, k = 16) and layer 1 (one group, k = 8) only."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=13,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=4, max_position_embeddings=64,
                         tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.layers[11].self_attn.o_proj.weight.mul_(8.0)
        model.model.layers[1].self_attn.o_proj.weight[:, :8].mul_(4.0)
    base = os.path.join(work, "base")
    model.save_pretrained(base, safe_serialization=True)
    sel = os.path.join(work, "sel.json")
    run(s2ft, "select", base, "-o", sel, "--strategy", "weight", "--targets", "o", "--count-o", "3",
        "--allocation", "global")
    tuned = os.path.join(work, "tuned")
    perturbed_copy(base, tuned, seed=1, scale=0.5)
    adapter = os.path.join(work, "a.safetensors")
    run(s2ft, "diff", base, tuned, "--selection", sel, "-o", adapter)
    ranks = {m: len(lines) for m, (lines, _) in adapter_entries(adapter).items()}
    check(ranks == {"model.layers.1.self_attn.o_proj": 8, "model.layers.11.self_attn.o_proj": 16},
          "the synthetic selection trains %s" % ranks)
    tokens = torch.randint(0, 64, (2, 24), generator=torch.Generator().manual_seed(2))
    check_export("13 layers, 1 vs 11", s2ft, base, adapter, work, tokens)


def stories_case(s2ft, data, work):
    base = os.path.join(data, "stories260K-hf")
    if not os.path.isfile(os.path.join(base, "config.json")):
        print("SKIP: %s is absent (the real stories260K checkpoint; set S2FT_TEST_DATA)" % base)
        return SKIP
    tokens = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(3))
    tokens[:, 0] = 1  # BOS

    # O (single query heads), V, DOWN and UP, lines scattered at random.
    sel_a = os.path.join(work, "sel-a.json")
    run(s2ft, "select", base, "-o", sel_a, "--strategy", "random", "--seed", "3", "--heads", "single",
        "--targets", "o,v,down,up", "--ratio-o", "0.5", "--ratio-v", "0.5", "--ratio-down", "0.1",
        "--ratio-up", "0.05")
    tuned_a = os.path.join(work, "tuned-a")
    perturbed_copy(base, tuned_a, seed=4)
    a = os.path.join(work, "a.safetensors")
    run(s2ft, "diff", base, tuned_a, "--selection", sel_a, "-o", a)

    # Trained on the permuted checkpoint (selected units first), brought back
    # to base order with permute --inverse; the adapter is in base order.
    perm = os.path.join(work, "perm")
    run(s2ft, "permute", base, "-o", perm, "--strategy", "weight", "--targets", "o,down,up",
        "--ratio-o", "0.25", "--ratio-down", "0.2", "--ratio-up", "0.1")
    tuned_perm = os.path.join(work, "tuned-perm")
    perturbed_copy(perm, tuned_perm, seed=5)
    tuned_b = os.path.join(work, "tuned-b")
    run(s2ft, "permute", "--inverse", tuned_perm, "-o", tuned_b)
    b = os.path.join(work, "b.safetensors")
    run(s2ft, "diff", base, tuned_b, "--selection", os.path.join(perm, "s2ft-selection.json"), "-o", b,
        "--scale", "2")

    fused = os.path.join(work, "fused.safetensors")
    run(s2ft, "fuse", a, b + ":0.5", "-o", fused)

    check_export("O,V,DOWN,UP random", s2ft, base, a, work, tokens)
    check_export("permuted, scale 2", s2ft, base, b, work, tokens)
    check_export("fused", s2ft, base, fused, work, tokens)
    check_export("exported at scale 0.3", s2ft, base, a, work, tokens, scale=0.3)
    return 0


def write_sorsa_adapter(base, path, seed):
    """A SORSA adapter for `base` written from the adapter format's
    definition (docs/adapter-format.md, version 4): per chosen weight the
    top-r singular triplets (u0, s0, vt0) of a float64 SVD, moved as training
    would (u, s, vt), stored as b = [u s | -u0 s0] and a = [vt ; vt0]. Base
    fingerprints are 0 (unknown: never checked)."""
    with open(os.path.join(base, "config.json")) as f:
        cfg = json.load(f)
    weights = load_torch(os.path.join(base, "model.safetensors"))
    g = torch.Generator().manual_seed(seed)
    chosen = [(0, "self_attn.q_proj", 4), (1, "self_attn.v_proj", 2), (2, "mlp.down_proj", 8), (4, "mlp.gate_proj", 3)]
    tensors, summary = {}, []
    for layer, proj, r in chosen:
        stem = "model.layers.%d.%s" % (layer, proj)
        w = weights[stem + ".weight"].double()
        u_full, s_full, vt_full = torch.linalg.svd(w, full_matrices=False)
        u0, s0, vt0 = u_full[:, :r].float(), s_full[:r].float(), vt_full[:r].float()
        u = u0 + 0.05 * torch.randn(u0.shape, generator=g)
        s = s0 * (1 + 0.1 * torch.randn(s0.shape, generator=g))
        vt = vt0 + 0.05 * torch.randn(vt0.shape, generator=g)
        b = torch.cat([(u.double() * s.double()).float(), (-(u0.double() * s0.double())).float()], dim=1)
        a = torch.cat([vt, vt0], dim=0)
        tensors[stem + ".s2ft_low_rank_b"] = b.contiguous()
        tensors[stem + ".s2ft_low_rank_a"] = a.contiguous()
        tensors[stem + ".s2ft_low_rank_base_fingerprint"] = torch.zeros(1, dtype=torch.int64)
        summary.append({"tensor": stem, "weight": {"self_attn.q_proj": "Q", "self_attn.v_proj": "V",
                                                   "mlp.down_proj": "DOWN", "mlp.gate_proj": "GATE"}[proj],
                        "rank": 2 * r, "fingerprint": "0" * 16})
    meta = {"format": "s2ft-adapter", "format_version": "4", "name": "sorsa", "default_scale": "1",
            "axes": "O:columns,V:rows,DOWN:columns,UP:rows", "n_layers": str(cfg["num_hidden_layers"]),
            "d_model": str(cfg["hidden_size"]), "n_heads": str(cfg["num_attention_heads"]),
            "n_kv_heads": str(cfg["num_key_value_heads"]), "head_dim": str(cfg["head_dim"]),
            "d_ff": str(cfg["intermediate_size"]), "targets": "", "slices": "[]", "sparse": "[]",
            "low_rank": json.dumps(summary)}
    save_torch(tensors, path, metadata=meta)
    # U64 fingerprints: safetensors-torch has no uint64, so retag the int64 zeros.
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = f.read(n).replace(b'"dtype":"I64"', b'"dtype":"U64"')
        check(len(header) == n, "the header changed length")
        f.seek(8)
        f.write(header)


def sorsa_case(s2ft, data, work):
    base = os.path.join(data, "stories260K-hf")
    if not os.path.isfile(os.path.join(base, "config.json")):
        print("SKIP: %s is absent (the real stories260K checkpoint; set S2FT_TEST_DATA)" % base)
        return SKIP
    tokens = torch.randint(0, 512, (2, 48), generator=torch.Generator().manual_seed(7))
    tokens[:, 0] = 1  # BOS
    adapter = os.path.join(work, "sorsa.safetensors")
    write_sorsa_adapter(base, adapter, seed=8)
    out = run(s2ft, "inspect", adapter)
    check("low-rank entries: 4" in out, "inspect does not list the low-rank entries: %s" % out)
    check_export("SORSA q,v,down,gate", s2ft, base, adapter, work, tokens)
    check_export("SORSA at scale 0.5", s2ft, base, adapter, work, tokens, scale=0.5)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--s2ft", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--case", required=True, choices=["synthetic", "stories260k", "sorsa"])
    args = p.parse_args()
    print("torch %s, transformers %s, peft %s" % (torch.__version__, transformers.__version__, peft.__version__))
    logging.getLogger("transformers").setLevel(logging.WARNING)
    work = tempfile.mkdtemp(prefix="s2ft-interop-")
    try:
        if args.case == "synthetic":
            synthetic_case(args.s2ft, work)
            status = 0
        elif args.case == "sorsa":
            status = sorsa_case(args.s2ft, args.data, work)
        else:
            status = stories_case(args.s2ft, args.data, work)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if status == 0:
        print("PASS")
    return status


if __name__ == "__main__":
    sys.exit(main())
