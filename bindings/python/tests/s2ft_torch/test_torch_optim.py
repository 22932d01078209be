"""S2FTOptimizer (libs2ft's AdamW/SGD on slices) against torch.optim on the same slices."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import io


import s2ft
import s2ft.torch as st
from s2ft_torch_helpers import batch, loss_of, rel, tiny_model

OPTS = dict(targets=("o", "v", "down", "up"), count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="random", seed=8)


def slices(model):
    return [m.weight_slice.detach().clone() for _, _, m in st.state_of(model).modules(model)]


def run(model, opt, steps, first=0, scheduler=None):
    for step in range(first, first + steps):
        loss_of(model, batch(60 + step)).backward()
        opt.step()
        opt.zero_grad()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("permute", [True, False])
@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_matches_torch_optimizers(permute, kind):
    a, b = tiny_model(), tiny_model()
    st.prepare(a, permute=permute, **OPTS)
    st.prepare(b, permute=permute, **OPTS)
    if kind == "adamw":
        ours = st.S2FTOptimizer(a, lr=1e-2, weight_decay=0.1)
        theirs = torch.optim.AdamW([p for p in b.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    else:
        ours = st.S2FTOptimizer(a, lr=0.1, kind="sgd", momentum=0.9)
        theirs = torch.optim.SGD([p for p in b.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    run(a, ours, 4)
    run(b, theirs, 4)
    assert ours.step_count == 4
    for x, y in zip(slices(a), slices(b)):
        assert rel(x, y) <= 1e-5
    with torch.no_grad():
        assert rel(a(batch(3)).logits, b(batch(3)).logits) <= 1e-5


def test_state_dict_resumes_exactly_and_scheduler_sets_lr():
    a = tiny_model()
    st.prepare(a, **OPTS)
    opt = st.S2FTOptimizer(a, lr=1e-2, max_grad_norm=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    run(a, opt, 2, scheduler=sched)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-3)
    assert opt.last_grad_norm > 0
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt.state_dict()}, buf)
    run(a, opt, 2, first=2)
    expected = slices(a)

    b = tiny_model()
    st.prepare(b, **OPTS)
    opt_b = st.S2FTOptimizer(b, lr=1e-2, max_grad_norm=0.5)
    saved = torch.load(io.BytesIO(buf.getvalue()))
    b.load_state_dict(saved["model"])
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.step_count == 2 and opt_b.param_groups[0]["lr"] == pytest.approx(2.5e-3)
    run(b, opt_b, 2, first=2)
    for x, y in zip(slices(b), expected):
        assert torch.equal(x, y)


def test_bfloat16_weights_keep_f32_masters():
    a = tiny_model().to(torch.bfloat16)
    st.prepare(a, **OPTS)
    opt = st.S2FTOptimizer(a, lr=1e-3)
    before = slices(a)
    run(a, opt, 2)
    after = slices(a)
    assert all(x.dtype == torch.bfloat16 for x in after)
    assert any(not torch.equal(x, y) for x, y in zip(before, after))


def test_errors():
    with pytest.raises(s2ft.InvalidArgumentError, match="no trained slices"):
        st.S2FTOptimizer(tiny_model())
    with pytest.raises(s2ft.InvalidArgumentError):
        st.S2FTOptimizer([torch.nn.Linear(2, 2)])
    a = tiny_model()
    st.prepare(a, **OPTS)
    opt = st.S2FTOptimizer(a)
    a.to(torch.bfloat16)
    loss_of(a, batch()).backward()
    with pytest.raises(s2ft.StateError, match="moved"):
        opt.step()
    with pytest.raises(s2ft.InvalidArgumentError):
        opt.load_state_dict({"state": {}, "param_groups": []})
