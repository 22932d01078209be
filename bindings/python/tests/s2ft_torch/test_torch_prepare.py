"""prepare() and unprepare() on tiny LLaMA (GQA), Mistral and Qwen2 models."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import copy


import s2ft
import s2ft.torch as st
from s2ft_torch_helpers import batch, loss_of, rel, tiny_model

TARGET_PATHS = {s2ft.Target.O: "self_attn.o_proj", s2ft.Target.V: "self_attn.v_proj",
                s2ft.Target.DOWN: "mlp.down_proj", s2ft.Target.UP: "mlp.up_proj"}
ALL = ("o", "v", "down", "up")


def module(model, layer, target):
    return model.get_submodule("model.layers.%d.%s" % (layer, TARGET_PATHS[target]))


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def base_slice(full, m):
    lines = torch.tensor(m.base_lines)
    return full[:, lines] if m.axis == s2ft.Axis.COLUMNS else full[lines]


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
@pytest.mark.parametrize("permute", [True, False])
def test_logits_unchanged_and_only_slices_train(kind, permute):
    model = tiny_model(kind)
    ref = copy.deepcopy(model)
    ids = batch()
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="weight", permute=permute)
    assert rel(logits(model, ids), logits(ref, ids)) <= 1e-5
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 8 and all(n.endswith(".weight_slice") for n in trainable)
    state = st.state_of(model)
    assert state.permuted == permute
    assert state.shape == st.model_shape(ref)
    assert len(state.modules(model)) == 8


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("permute", [True, False])
def test_slice_gradients_equal_the_full_gradient(kind, permute):
    model = tiny_model(kind)
    ref = copy.deepcopy(model)
    ids = batch()
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 4, "up": 6}, strategy="random", seed=3,
               permute=permute)
    loss_of(model, ids).backward()
    loss_of(ref, ids).backward()
    for layer, target, m in st.state_of(model).modules(model):
        full = module(ref, layer, target).weight.grad
        assert rel(m.weight_slice.grad, base_slice(full, m)) <= 1e-5, (layer, target)


@pytest.mark.parametrize("reentrant", [False, True])
def test_transformers_gradient_checkpointing(reentrant):
    model, ref = tiny_model(), tiny_model()
    opts = dict(targets=ALL, count={"o": 1, "v": 1, "down": 4, "up": 6}, strategy="weight")
    st.prepare(model, **opts)
    st.prepare(ref, **opts)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    if reentrant:  # as for any adapter method: the checkpointed blocks need an input that requires grad
        model.enable_input_require_grads()
    model.train()
    ref.train()
    loss_of(model, batch()).backward()
    loss_of(ref, batch()).backward()
    for (_, _, a), (_, _, b) in zip(st.state_of(model).modules(model), st.state_of(ref).modules(ref)):
        assert rel(a.weight_slice.grad, b.weight_slice.grad) <= 1e-6


def test_cpu_autocast_training_step():
    model, ref = tiny_model(), tiny_model()
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 4, "up": 6}, strategy="weight")
    st.prepare(ref, targets=ALL, count={"o": 1, "v": 1, "down": 4, "up": 6}, strategy="weight")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_of(model, batch())
    loss.backward()
    loss_of(ref, batch()).backward()
    for (_, _, a), (_, _, b) in zip(st.state_of(model).modules(model), st.state_of(ref).modules(ref)):
        assert a.weight_slice.grad.dtype == torch.float32
        assert rel(a.weight_slice.grad, b.weight_slice.grad) <= 0.1


def train(model, steps=3, lr=1e-2, seed=1):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.1)
    for step in range(steps):
        ids = batch(seed + step)
        loss_of(model, ids).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen2"])
def test_training_then_unprepare_changes_only_trained_lines(kind):
    model = tiny_model(kind)
    original = copy.deepcopy(model)
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="weight")
    lines = {(l, t): m.base_lines for l, t, m in st.state_of(model).modules(model)}
    train(model)
    trained = logits(model, batch(9))
    st.unprepare(model)
    assert not hasattr(model, "_s2ft_state")
    assert rel(logits(model, batch(9)), trained) <= 1e-5
    assert all(type(m) is not st.S2FTLinear for m in model.modules())
    by_name = dict(original.named_parameters())
    for name, p in model.named_parameters():
        q = by_name[name]
        assert p.requires_grad == q.requires_grad
        hit = [(l, t) for (l, t) in lines if name == "model.layers.%d.%s.weight" % (l, TARGET_PATHS[t])]
        if not hit:
            assert torch.equal(p, q), name
            continue
        changed = (p != q).nonzero()
        axis = 1 if hit[0][1] in (s2ft.Target.O, s2ft.Target.DOWN) else 0
        assert set(changed[:, axis].tolist()) == set(lines[hit[0]]), name


@pytest.mark.parametrize("strategy", ["random", "weight", "activation", "weight-activation", "gradient"])
@pytest.mark.parametrize("order", ["largest", "smallest"])
def test_every_strategy(strategy, order):
    model = tiny_model()
    ref = copy.deepcopy(model)
    calibration = [batch(20), {"input_ids": batch(21), "attention_mask": torch.ones(2, 11, dtype=torch.long)}]
    st.prepare(model, targets=ALL, ratio={"o": 0.5, "v": 0.5, "down": 0.1, "up": 0.1}, strategy=strategy,
               order=order, calibration=calibration if strategy not in ("random", "weight") else None)
    assert rel(logits(model, batch()), logits(ref, batch())) <= 1e-5
    assert all(p.grad is None for p in model.parameters())
    assert st.state_of(model).options["strategy"] == getattr(s2ft.Strategy, {
        "weight-activation": "WEIGHT_ACT"}.get(strategy, strategy.upper()))


def test_weight_strategy_picks_the_largest_channels():
    model = tiny_model()
    norms = [(model.model.layers[i].mlp.down_proj.weight.double() ** 2).sum(0) for i in range(2)]
    st.prepare(model, targets=("down",), count=4, strategy="weight", order="largest")
    for i in range(2):
        chosen = sorted(module(model, i, s2ft.Target.DOWN).base_lines)
        assert chosen == sorted(torch.topk(norms[i], 4).indices.tolist())


def test_activation_strategy_ignores_masked_tokens():
    # Padding tokens of a batch must not count: a batch whose second half is masked scores like its first half.
    ids = batch(30, rows=1, cols=12)
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[0, 6:] = 0
    a, b = tiny_model(), tiny_model()
    st.prepare(a, targets=("down",), count=6, strategy="activation", order="smallest",
               calibration=[{"input_ids": ids, "attention_mask": mask}])
    st.prepare(b, targets=("down",), count=6, strategy="activation", order="smallest",
               calibration=[{"input_ids": ids[:, :6]}])
    for i in range(2):
        assert module(a, i, s2ft.Target.DOWN).base_lines == module(b, i, s2ft.Target.DOWN).base_lines


def test_gradient_strategy_forms_no_parameter_gradients():
    model = tiny_model()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    st.prepare(model, targets=ALL, count={"o": 1, "v": 1, "down": 3, "up": 3}, strategy="gradient",
               calibration=[batch(5)])
    assert all(p.grad is None for p in model.parameters())
    st.unprepare(model)
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}


def trained_base_weights(model):
    """Per (layer, target): the weight in base order after unprepare."""
    st.unprepare(model)
    return {(l, t): module(model, l, t).weight.detach().clone() for l in range(2) for t in TARGET_PATHS}


@pytest.mark.parametrize("heads", ["group", "single"])
def test_indexed_equals_permuted(heads):
    a, b = tiny_model(), tiny_model()
    opts = dict(targets=ALL, count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="random", seed=11, heads=heads)
    if heads == "single":  # query heads 0 and 3 sit in different KV groups: no contiguous permutation exists
        shape = st.model_shape(a)
        opts = dict(selection=s2ft.Selection.create(shape, {
            "o": [[0, 3], [1, 2]], "v": [[1], [0]], "down": [[0, 5, 9], [36, 2, 7]], "up": [[4], [4]]},
            head_granularity="single"))
    st.prepare(a, permute=True, **opts)
    st.prepare(b, permute=False, **opts)
    ma, mb = st.state_of(a).modules(a), st.state_of(b).modules(b)
    assert [sorted(m.base_lines) for _, _, m in ma] == [sorted(m.base_lines) for _, _, m in mb]
    assert all(not m.contiguous for _, _, m in mb)
    if heads == "group":
        assert all(m.contiguous for _, _, m in ma)
    else:  # single query heads under GQA: O is an index list on the permuted weights
        assert all(m.contiguous == (t != s2ft.Target.O) for _, t, m in ma)
    train(a)
    train(b)
    assert rel(logits(a, batch(9)), logits(b, batch(9))) <= 1e-5
    wa, wb = trained_base_weights(a), trained_base_weights(b)
    for key in wa:
        assert rel(wa[key], wb[key]) <= 1e-5, key


def test_global_allocation():
    model = tiny_model(num_hidden_layers=3)
    st.prepare(model, targets=("down",), count=6, allocation="global", strategy="weight")
    total = sum(len(m.base_lines) for _, _, m in st.state_of(model).modules(model))
    assert total == 6


def test_base_model_and_ddp_wrapper_are_accepted():
    model = tiny_model()
    ref = copy.deepcopy(model)
    st.prepare(model.model, targets=("o",), count=1)  # the LlamaModel inside
    with torch.no_grad():
        assert rel(model.model(batch()).last_hidden_state, ref.model(batch()).last_hidden_state) <= 1e-5
    st.unprepare(model.model)


def test_deepcopy_and_pickle_of_a_prepared_model(tmp_path):
    model = tiny_model()
    st.prepare(model, targets=("o", "down"), count={"o": 1, "down": 3}, heads="single", seed=2)
    train(model, steps=1)
    copied = copy.deepcopy(model)
    torch.save(model, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt")
    for other in (copied, loaded):
        assert torch.equal(logits(other, batch()), logits(model, batch()))
        assert st.state_of(other).selection.indices(0, s2ft.Target.O) == \
            st.state_of(model).selection.indices(0, s2ft.Target.O)
        st.unprepare(other)
    st.unprepare(model)
    assert torch.equal(logits(copied, batch()), logits(model, batch()))


def test_errors():
    model = tiny_model()
    with pytest.raises(s2ft.UnsupportedError, match="LLaMA, Mistral and Qwen2"):
        st.prepare(torch.nn.Linear(2, 2))
    gpt2 = pytest.importorskip("transformers").GPT2LMHeadModel(
        pytest.importorskip("transformers").GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10))
    with pytest.raises(s2ft.UnsupportedError, match="gpt2"):
        st.prepare(gpt2)
    for bad in (dict(ratio=1.5), dict(ratio=0), dict(count=0), dict(ratio={"o": 0.5}, count={"o": 1}),
                dict(strategy="best"), dict(order="middle"), dict(targets=("q",)), dict(targets=()),
                dict(ratio={"up": 0.1}), dict(seed=-1), dict(allocation="everywhere"), dict(heads="pairs")):
        with pytest.raises(s2ft.InvalidArgumentError):
            st.prepare(model, **bad)
    with pytest.raises(s2ft.InvalidArgumentError, match="calibration"):
        st.prepare(model, strategy="activation")
    with pytest.raises(s2ft.InvalidArgumentError):  # more channels than the model has (library's check)
        st.prepare(model, targets=("down",), count=1000)
    with pytest.raises(s2ft.InvalidArgumentError, match="not prepared"):
        st.unprepare(model)
    assert all(type(m) is not st.S2FTLinear for m in model.modules())  # failures changed nothing
    assert all(p.requires_grad for p in model.parameters())
    st.prepare(model)
    with pytest.raises(s2ft.StateError, match="already prepared"):
        st.prepare(model)
    with pytest.raises(s2ft.InvalidArgumentError, match="float64"):
        st.prepare(tiny_model().double())
    with pytest.raises(s2ft.UnsupportedError, match="pretraining_tp"):
        st.prepare(tiny_model(pretraining_tp=2))
