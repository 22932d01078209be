#!/usr/bin/env python3
"""Fine-tune a transformers LLaMA model with S2FT in PyTorch, and save what changed as a libs2ft adapter.

    python finetune_torch.py                                  # a tiny random LLaMA (GQA)
    python finetune_torch.py --model ../shared/data/stories260K-hf --steps 30

Steps: load the model; select heads (o_proj columns) and FFN channels
(down_proj columns) by the smallest input activations over calibration
batches (the paper's best strategy), co-permute them to the front and
freeze everything else (s2ft.torch.prepare); train with torch.optim.AdamW;
write the adapter (s2ft.torch.export_adapter), which `s2ft merge BASE
ADAPTER -o OUT` applies to the unpermuted base checkpoint; finally undo the
permutation with the training merged in (s2ft.torch.unprepare) and check
that only the selected lines of o_proj and down_proj changed.

Runs on the CPU or, with --device cuda, on a GPU (libs2ft built with CUDA).
The data is a toy task without a tokenizer: a fixed sequence of token ids
the model learns to continue.
"""

import argparse
import copy

import torch
import transformers

import s2ft
import s2ft.torch as st


def load_model(args):
    """The model of --model, or a tiny random LLaMA with grouped-query attention."""
    if args.model:
        return transformers.AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=172, num_hidden_layers=4,
                                      num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=128)
    return transformers.LlamaForCausalLM(config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a Hugging Face LLaMA/Mistral/Qwen2 folder (default: a tiny random model)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--adapter", default="finetune_torch.safetensors", help="where to write the adapter")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model = load_model(args).to(args.device)
    original = copy.deepcopy(model)  # only to show what changed at the end
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    text = torch.randint(3, vocab, (4, 33), generator=g).to(args.device)  # the sequences to learn
    inputs, labels = text[:, :-1], text[:, 1:]

    # Select 1 KV group of heads for o_proj and 4% of the FFN channels for down_proj in every layer.
    st.prepare(model, targets=("o", "down"), ratio={"o": 0.25, "down": 0.04}, strategy="activation",
               order="smallest", calibration=[inputs])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("weight_slice"))
    print("trainable: %d of %d parameters (%.2f%%)" % (trainable, total, 100.0 * trainable / total))
    for layer, target, module in st.state_of(model).modules(model):
        print("  layer %d %-4s %s, base lines %s" % (layer, target.name, module.lines, sorted(module.base_lines)))

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    model.train()
    for step in range(args.steps):
        loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step == 0 or step == args.steps - 1 or step % 10 == 9:
            print("step %3d  loss %.4f" % (step, loss.item()))
    model.eval()
    with torch.no_grad():
        trained_logits = model(inputs).logits

    st.export_adapter(model, args.adapter, name="finetune_torch", metadata={"task": "toy continuation"})
    adapter = s2ft.Adapter.load(args.adapter)
    lines = sum(len(adapter.lines(l, t)) for l in range(adapter.shape.n_layers) for t in adapter.targets)
    print("adapter %s: %d lines in targets %s, selection strategy %s" % (
        args.adapter, lines, [t.name for t in adapter.targets], adapter.metadata["selection_strategy"]))

    st.unprepare(model)  # base order again, with the training merged in
    with torch.no_grad():
        print("logits after unprepare: max |difference| %.3g" % (model(inputs).logits - trained_logits).abs().max())
    changed = {name: int((p != q).any(dim=0 if "down_proj" in name or "o_proj" in name else 1).sum())
               for (name, p), q in zip(model.named_parameters(), original.parameters()) if not torch.equal(p, q)}
    print("changed weights (lines): %s" % ", ".join("%s (%d)" % kv for kv in changed.items()))
    assert all(name.endswith(("o_proj.weight", "down_proj.weight")) for name in changed)


if __name__ == "__main__":
    main()
