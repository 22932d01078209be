"""Helpers of the s2ft.torch tests: tiny random LLaMA / Mistral / Qwen2 models, batches, comparisons, fixtures.

Not a conftest.py: the core tests' conftest module name must stay theirs.
Test modules import what they use, fixtures included. The `s2ft` tool for
the merge tests is $S2FT_CLI (CTest sets it), else /tmp/b-cpu/src/cli/s2ft
or `s2ft` on PATH.
"""

import os
import pathlib
import shutil

import pytest
import torch
import transformers

VOCAB = 61


def rel(a, b):
    """max |a - b| / max |b| in float64."""
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def llama_config(**kw):
    """A tiny LLaMA config with GQA (4 heads, 2 KV heads, head_dim 8) and an odd d_ff."""
    args = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5)
    args.update(kw)
    return transformers.LlamaConfig(**args)


def tiny_model(kind="llama", seed=0, **kw):
    """A random tiny causal LM of ``kind`` ("llama", "mistral", "qwen2") in eval mode, f32."""
    torch.manual_seed(seed)
    if kind == "llama":
        model = transformers.LlamaForCausalLM(llama_config(**kw))
    elif kind == "mistral":
        args = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=45, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64, sliding_window=None)
        args.update(kw)
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**args))
    elif kind == "qwen2":
        args = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=41, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        args.update(kw)
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**args))
        with torch.no_grad():  # Qwen2 initialises biases to zero: make them matter
            for name, p in model.named_parameters():
                if name.endswith(".bias"):
                    p.normal_(0, 0.5)
    else:
        raise ValueError(kind)
    return model.eval()


def batch(seed=1, rows=2, cols=11):
    """Random input ids [rows, cols]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (rows, cols), generator=g)


def loss_of(model, ids):
    """The causal LM loss with labels = ids."""
    return model(input_ids=ids, labels=ids).loss


#: The repository root (bindings/python/tests/s2ft_torch/../../../..).
REPO = pathlib.Path(__file__).resolve().parents[4]


@pytest.fixture
def s2ft_cli():
    """The s2ft tool, or a skip."""
    for path in (os.environ.get("S2FT_CLI"), "/tmp/b-cpu/src/cli/s2ft", shutil.which("s2ft")):
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("the s2ft tool is not found (set S2FT_CLI)")


@pytest.fixture
def stories260k():
    """The stories260K Hugging Face folder ($S2FT_TEST_DATA or ../shared/data), or a skip saying why."""
    base = os.environ.get("S2FT_TEST_DATA") or str(REPO.parent / "shared" / "data")
    folder = pathlib.Path(base) / "stories260K-hf"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("realdata: %s is absent (set S2FT_TEST_DATA to the folder holding stories260K-hf)" % folder)
    return folder
