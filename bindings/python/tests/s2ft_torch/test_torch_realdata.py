"""The real stories260K checkpoint (LLaMA, GQA 8/4 heads, d_ff 172) through s2ft.torch (label realdata)."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import subprocess


import s2ft.torch as st
from s2ft_torch_helpers import rel, s2ft_cli, stories260k  # noqa: F401 (fixtures)

TOKENS = 40
ALL = ("o", "v", "down", "up")


def load(folder):
    return transformers.LlamaForCausalLM.from_pretrained(folder).eval()


def greedy(model, n=TOKENS):
    """n greedy tokens after BOS (token 1), without a cache: one full forward per token."""
    ids = torch.tensor([[1]])
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids, use_cache=False).logits[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return ids[0, 1:].tolist()


@pytest.mark.parametrize("opts", [
    dict(strategy="weight", ratio={"o": 0.25, "v": 0.25, "down": 0.05, "up": 0.05}),
    dict(strategy="activation", order="smallest", heads="single", count={"o": 3, "v": 1, "down": 9, "up": 4}),
    dict(strategy="gradient", count={"o": 1, "v": 1, "down": 9, "up": 9}, permute=False),
], ids=["weight", "activation-single-heads", "gradient-indexed"])
def test_prepare_keeps_the_greedy_continuation(stories260k, opts):
    ref = load(stories260k)
    expected = greedy(ref)
    model = load(stories260k)
    calibration = [torch.tensor([[1] + expected])]
    st.prepare(model, targets=ALL, calibration=calibration, **opts)
    assert greedy(model) == expected
    ids = torch.tensor([[1] + expected])
    with torch.enable_grad():  # the training path: libs2ft's partial forward
        out = model(ids).logits
    with torch.no_grad():
        assert rel(out, ref(ids).logits) <= 1e-5
    st.unprepare(model)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name


def test_trained_adapter_merges_into_the_checkpoint(stories260k, s2ft_cli, tmp_path):
    model = load(stories260k)
    text = torch.tensor([[1] + greedy(model)])
    st.prepare(model, targets=ALL, strategy="weight", count={"o": 1, "v": 1, "down": 8, "up": 8})
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    # learn the text shifted by one token: a change the logits show
    first = None
    for _ in range(5):
        loss = model(text[:, :-1], labels=text[:, 1:]).loss
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < first
    with torch.no_grad():
        trained = model(text).logits
    path = st.export_adapter(model, tmp_path / "stories.safetensors", name="stories")
    subprocess.run([s2ft_cli, "merge", str(stories260k), str(path), "-o", str(tmp_path / "merged")], check=True,
                   capture_output=True)
    merged = load(tmp_path / "merged")
    with torch.no_grad():
        assert rel(merged(text).logits, trained) <= 1e-5
