"""export_adapter(): the adapter of a trained model, applied by the s2ft tool and by libs2ft in-process."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import copy
import json
import subprocess


import s2ft
import s2ft.torch as st
from s2ft_torch_helpers import batch, loss_of, rel, s2ft_cli, tiny_model  # noqa: F401 (fixture)

ALL = ("o", "v", "down", "up")
CLASSES = {"llama": transformers.LlamaForCausalLM, "mistral": transformers.MistralForCausalLM,
           "qwen2": transformers.Qwen2ForCausalLM}


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def train(model, steps=4):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    for step in range(steps):
        loss_of(model, batch(40 + step)).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("kind,permute,heads", [("llama", True, "group"), ("llama", False, "group"),
                                                ("llama", True, "single"), ("qwen2", True, "group"),
                                                ("mistral", True, "group")])
def test_merged_by_the_s2ft_tool(tmp_path, s2ft_cli, kind, permute, heads):
    model = tiny_model(kind)
    model.save_pretrained(tmp_path / "base", safe_serialization=True)
    st.prepare(model, targets=ALL, count={"o": 2 if heads == "single" else 1, "v": 1, "down": 5, "up": 3},
               strategy="weight", heads=heads, permute=permute)
    train(model)
    trained = logits(model, batch(7))
    path = st.export_adapter(model, tmp_path / "a.safetensors", name="tiny", metadata={"task": "test"})
    subprocess.run([s2ft_cli, "merge", str(tmp_path / "base"), str(path), "-o", str(tmp_path / "merged")],
                   check=True, capture_output=True)
    merged = CLASSES[kind].from_pretrained(tmp_path / "merged").eval()
    assert rel(logits(merged, batch(7)), trained) <= 1e-5
    info = subprocess.run([s2ft_cli, "inspect", str(path)], check=True, capture_output=True, text=True).stdout
    assert "tiny" in info


def test_adapter_contents(tmp_path):
    model = tiny_model()
    base = copy.deepcopy(model)
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="random", seed=4)
    train(model, steps=2)
    path = st.export_adapter(model, tmp_path / "a.safetensors", name="run", metadata={"task": "unit"})
    a = s2ft.Adapter.load(path)
    assert a.name == "run" and a.shape == st.model_shape(base)
    meta = dict(a.metadata)
    assert meta["task"] == "unit" and meta["selection_strategy"] == "random" and meta["base_dtype"] == "float32"
    assert json.loads(meta["selection_budget"]) == {"O": {"count": 1}, "V": {"count": 1}, "DOWN": {"count": 5},
                                                    "UP": {"count": 3}}
    st.unprepare(model)
    for layer in range(2):
        for target, path_ in ((s2ft.Target.O, "self_attn.o_proj"), (s2ft.Target.V, "self_attn.v_proj"),
                              (s2ft.Target.DOWN, "mlp.down_proj"), (s2ft.Target.UP, "mlp.up_proj")):
            name = "model.layers.%d.%s" % (layer, path_)
            w0, w1 = base.get_submodule(name).weight, model.get_submodule(name).weight
            lines = a.lines(layer, target)
            delta = torch.from_numpy(a.delta(layer, target))
            full = torch.zeros_like(w0)
            if target in (s2ft.Target.O, s2ft.Target.DOWN):
                full[:, lines] = delta
            else:
                full[lines] = delta
            assert rel(w0 + full, w1) <= 1e-6, name
            assert (delta != 0).any()


def test_applies_to_the_base_in_process(tmp_path):
    # s2ft.Model over the unpermuted base weights applies it; fingerprints match that base.
    model = tiny_model()
    base = copy.deepcopy(model)
    st.prepare(model, targets=("o", "down"), count={"o": 1, "down": 4}, strategy="weight")
    train(model, steps=2)
    trained = logits(model, batch(7))
    adapter = st.adapter_of(model, name="x")
    layers = [s2ft.LayerWeights(o=l.self_attn.o_proj.weight.detach(), v=l.self_attn.v_proj.weight.detach(),
                                down=l.mlp.down_proj.weight.detach(), up=l.mlp.up_proj.weight.detach())
              for l in base.model.layers]
    with s2ft.Context.cpu() as ctx, s2ft.Model(ctx, st.model_shape(base), layers) as served:
        served.apply(adapter)
        assert rel(logits(base, batch(7)), trained) <= 1e-5
        # another base: refused by its fingerprints
        other = tiny_model(seed=5)
        layers2 = [s2ft.LayerWeights(o=l.self_attn.o_proj.weight.detach(), v=l.self_attn.v_proj.weight.detach(),
                                     down=l.mlp.down_proj.weight.detach(), up=l.mlp.up_proj.weight.detach())
                   for l in other.model.layers]
        with s2ft.Model(ctx, st.model_shape(other), layers2) as wrong:
            with pytest.raises(s2ft.FormatError):
                wrong.apply(adapter)


def test_untrained_model_gives_zero_deltas(tmp_path):
    model = tiny_model()
    st.prepare(model, targets=("down",), count=3)
    a = st.adapter_of(model)
    for layer in range(2):
        assert not a.delta(layer, s2ft.Target.DOWN).any()
    with pytest.raises(s2ft.InvalidArgumentError, match="not prepared"):
        st.export_adapter(tiny_model(), tmp_path / "x.safetensors")


def test_bfloat16_merge_is_bit_exact(tmp_path, s2ft_cli):
    # bf16 weights trained through f32 masters: base + delta rounds back to exactly the trained bf16 lines.
    model = tiny_model().to(torch.bfloat16)
    model.save_pretrained(tmp_path / "base", safe_serialization=True)
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="weight")
    opt = st.S2FTOptimizer(model, lr=1e-2)
    for step in range(3):
        loss_of(model, batch(50 + step)).backward()
        opt.step()
        opt.zero_grad()
    path = st.export_adapter(model, tmp_path / "a.safetensors")
    assert s2ft.Adapter.load(path).metadata["base_dtype"] == "bfloat16"
    subprocess.run([s2ft_cli, "merge", str(tmp_path / "base"), str(path), "-o", str(tmp_path / "merged")],
                   check=True, capture_output=True)
    merged = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "merged", torch_dtype=torch.bfloat16)
    base = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "base", torch_dtype=torch.bfloat16)
    st.unprepare(model)
    for (name, p), q in zip(model.named_parameters(), merged.parameters()):
        assert torch.equal(p, q), name
    assert not torch.equal(merged.model.layers[0].mlp.down_proj.weight, base.model.layers[0].mlp.down_proj.weight)
