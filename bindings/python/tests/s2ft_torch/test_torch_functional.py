"""The partial linear autograd functions and S2FTLinear against torch's own linear layer."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import copy
import io
import pickle

import torch.utils.checkpoint
from torch import nn

import s2ft
from s2ft.torch import ColumnPartialLinear, RowPartialLinear, S2FTLinear, partial_linear
from s2ft_torch_helpers import rel

COL, ROW = s2ft.Axis.COLUMNS, s2ft.Axis.ROWS
SLICES = [
    pytest.param(COL, (3, 4), id="columns-range"),
    pytest.param(COL, [9, 0, 4, 7], id="columns-indices"),
    pytest.param(ROW, (1, 3), id="rows-range"),
    pytest.param(ROW, [5, 2, 0], id="rows-indices"),
]


def make_slice(axis, lines):
    return s2ft.Slice.range(axis, *lines) if isinstance(lines, tuple) else s2ft.Slice.lines(axis, lines)


def lines_of(sl):
    return list(sl.indices) if sl.indices is not None else list(range(sl.begin, sl.begin + sl.count))


def slice_of(full, sl):
    idx = lines_of(sl)
    return full[:, idx] if sl.axis == COL else full[idx]


def pair(bias=True, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(10, 7, bias=bias).to(dtype)
    return lin, copy.deepcopy(lin)


@pytest.mark.parametrize("axis,lines", SLICES)
@pytest.mark.parametrize("bias", [False, True])
def test_matches_nn_linear_f32(axis, lines, bias):
    lin, ref = pair(bias)
    sl = make_slice(axis, lines)
    m = S2FTLinear(lin, sl)
    if bias:
        m.bias.requires_grad_(False)
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["weight_slice"]
    assert m.weight_slice.shape == ((7, sl.count) if axis == COL else (sl.count, 10))
    x = torch.randn(3, 5, 10, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    y, yr = m(x), ref(xr)
    assert rel(y, yr) <= 1e-6
    g = torch.randn_like(y)
    y.backward(g)
    yr.backward(g)
    assert rel(x.grad, xr.grad) <= 1e-6
    assert rel(m.weight_slice.grad, slice_of(ref.weight.grad, sl)) <= 1e-6
    assert m.weight.grad is None
    assert m.shares_storage() == (sl.indices is None)


def test_column_saves_only_the_slice():
    lin, _ = pair(bias=False)
    w = lin.weight.detach()
    p = nn.Parameter(w[:, 2:4].clone())
    x = torch.randn(6, 10, requires_grad=True)
    y = partial_linear(x, w, None, p, s2ft.Slice.range(COL, 2, 2))
    saved = y.grad_fn.saved_tensors
    assert [tuple(t.shape) for t in saved] == [(6, 2), (7, 10)]
    assert torch.equal(saved[0], x.detach()[:, 2:4])
    assert isinstance(y.grad_fn, ColumnPartialLinear._backward_cls)
    y2 = partial_linear(x, w, None, nn.Parameter(w[1:3].clone()), s2ft.Slice.range(ROW, 1, 2))
    assert isinstance(y2.grad_fn, RowPartialLinear._backward_cls)
    assert [tuple(t.shape) for t in y2.grad_fn.saved_tensors] == [(6, 10), (7, 10)]


def test_dx_only_when_needed_and_bias_gradient():
    lin, ref = pair(bias=True)
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 0, 3))
    x = torch.randn(4, 10)  # no grad: dx is not formed
    m(x).sum().backward()
    ref(x).sum().backward()
    assert rel(m.bias.grad, ref.bias.grad) <= 1e-6
    assert rel(m.weight_slice.grad, ref.weight.grad[:, :3]) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("axis,lines", SLICES)
def test_half_precision(dtype, axis, lines):
    lin, ref = pair(bias=False, dtype=dtype)
    sl = make_slice(axis, lines)
    m = S2FTLinear(lin, sl)
    x = torch.randn(8, 10).to(dtype).requires_grad_(True)
    xr = x.detach().float().requires_grad_(True)
    ref32 = nn.Linear(10, 7, bias=False)
    ref32.weight.data.copy_(ref.weight.float())
    y = m(x)
    assert y.dtype == dtype
    y.float().sum().backward()
    ref32(xr).sum().backward()
    assert m.weight_slice.grad.dtype == dtype and x.grad.dtype == dtype
    assert rel(y.float(), ref32(xr)) <= 1e-2
    assert rel(x.grad.float(), xr.grad) <= 1e-2
    assert rel(m.weight_slice.grad.float(), slice_of(ref32.weight.grad, sl)) <= 2e-2


def test_cpu_autocast_computes_in_bfloat16():
    lin, ref = pair(bias=True)
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 1, 4))
    x = torch.randn(5, 10, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
        yr = ref(x)
    assert y.dtype == yr.dtype == torch.bfloat16
    y.float().sum().backward()
    assert m.weight_slice.grad.dtype == torch.float32  # the parameter's dtype
    assert x.grad.dtype == torch.float32
    ref.weight.requires_grad_(True)
    ref(x.detach()).sum().backward()
    assert rel(m.weight_slice.grad, ref.weight.grad[:, 1:5]) <= 2e-2


def test_no_grad_and_frozen_slice_use_a_plain_linear():
    lin, ref = pair()
    m = S2FTLinear(lin, s2ft.Slice.range(ROW, 0, 2))
    x = torch.randn(3, 10)
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
    m.weight_slice.requires_grad_(False)
    y = m(x.requires_grad_(True))
    assert y.grad_fn is not None and not isinstance(
        y.grad_fn, (ColumnPartialLinear._backward_cls, RowPartialLinear._backward_cls))


def test_empty_batch():
    lin, _ = pair(bias=False)
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 0, 2))
    x = torch.randn(0, 10, requires_grad=True)
    y = m(x)
    assert y.shape == (0, 7)
    y.sum().backward()
    assert torch.equal(m.weight_slice.grad, torch.zeros(7, 2))


def sgd_step(m, x, lr=0.5):
    opt = torch.optim.SGD([m.weight_slice], lr=lr)
    m(x).pow(2).sum().backward()
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize("axis,lines", SLICES)
def test_training_changes_only_the_lines(axis, lines):
    lin, ref = pair(bias=True)
    sl = make_slice(axis, lines)
    m = S2FTLinear(lin, sl)
    m.bias.requires_grad_(False)
    x = torch.randn(6, 10)
    for _ in range(3):
        sgd_step(m, x)
    m.sync_()
    changed = (m.weight != ref.weight).nonzero()
    along = changed[:, 1] if axis == COL else changed[:, 0]
    assert set(along.tolist()) == set(lines_of(sl))
    assert torch.equal(slice_of(m.weight.detach(), sl), m.weight_slice.detach())
    assert torch.equal(m.bias, ref.bias)
    with torch.no_grad():  # the forward uses the trained values
        w = ref.weight.clone()
        if axis == COL:
            w[:, lines_of(sl)] = m.weight_slice
        else:
            w[lines_of(sl)] = m.weight_slice
        assert rel(m(x), x @ w.T + ref.bias) <= 1e-6


def test_to_dtype_reties_the_view():
    lin, _ = pair(bias=False)
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 2, 3))
    p = m.weight_slice
    m.to(torch.bfloat16)
    assert m.weight_slice is p and p.dtype == torch.bfloat16
    assert m.shares_storage()
    assert m.initial_slice.dtype == torch.bfloat16
    m.to(torch.float32)
    assert m.shares_storage()


def test_state_dict_round_trip_keeps_the_view():
    lin, _ = pair(bias=False)
    m = S2FTLinear(lin, s2ft.Slice.range(ROW, 2, 3))
    x = torch.randn(4, 10)
    sgd_step(m, x)
    sd = m.state_dict()
    assert sorted(sd) == ["weight", "weight_slice"]
    lin2, _ = pair(bias=False, seed=5)
    m2 = S2FTLinear(lin2, s2ft.Slice.range(ROW, 2, 3))
    m2.load_state_dict(sd)
    assert m2.shares_storage()
    assert torch.equal(m2.weight, m.weight)
    # the slice is authoritative: a state dict whose slice differs from its weight's lines wins
    sd = {k: v.clone() for k, v in sd.items()}
    sd["weight_slice"] += 1
    m2.load_state_dict(sd)
    assert torch.equal(m2.weight[2:5], sd["weight_slice"])


def test_broken_sharing_is_resynced_before_forward():
    lin, ref = pair(bias=False)
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 0, 2))
    # as FSDP or load_state_dict(assign=True) would: the parameter gets storage of its own
    m.weight_slice.data = m.weight_slice.data.clone()
    assert not m.shares_storage()
    with torch.no_grad():
        m.weight_slice.add_(1.0)
    x = torch.randn(3, 10)
    with torch.no_grad():
        w = ref.weight.clone()
        w[:, :2] += 1.0
        assert rel(m(x), x @ w.T) <= 1e-6
    m.tie_()
    assert m.shares_storage()


def test_copy_and_pickle():
    lin, _ = pair()
    m = S2FTLinear(lin, s2ft.Slice.lines(COL, [4, 1]))
    x = torch.randn(2, 10)
    m2 = copy.deepcopy(m)
    buf = io.BytesIO()
    torch.save(m, buf)
    m3 = torch.load(io.BytesIO(buf.getvalue()))
    m4 = pickle.loads(pickle.dumps(m))
    with torch.no_grad():
        for other in (m2, m3, m4):
            assert torch.equal(other(x), m(x))
            assert other.lines.indices == (4, 1)


@pytest.mark.parametrize("reentrant", [False, True])
def test_gradient_accumulation_and_checkpoint(reentrant):
    lin, ref = pair(bias=False)
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 3, 3))
    xs = [torch.randn(4, 10) for _ in range(3)]
    for x in xs:
        xx = x.clone().requires_grad_(True)
        torch.utils.checkpoint.checkpoint(m, xx, use_reentrant=reentrant).pow(2).sum().backward()
    for x in xs:
        ref(x).pow(2).sum().backward()
    assert rel(m.weight_slice.grad, ref.weight.grad[:, 3:6]) <= 1e-6


def test_bad_arguments():
    lin, _ = pair()
    with pytest.raises(s2ft.InvalidArgumentError):
        S2FTLinear(lin, s2ft.Slice.range(COL, 8, 3))  # past the 10 columns
    with pytest.raises(s2ft.InvalidArgumentError):
        S2FTLinear(nn.Conv1d(2, 2, 1), s2ft.Slice.range(COL, 0, 1))
    m = S2FTLinear(lin, s2ft.Slice.range(COL, 0, 1))
    m.weight.requires_grad_(True)
    with pytest.raises(s2ft.StateError):
        m(torch.randn(2, 10))
    m.weight.requires_grad_(False)
    with pytest.raises(s2ft.DtypeError):
        S2FTLinear(nn.Linear(10, 7).double(), s2ft.Slice.range(COL, 0, 1))(torch.randn(2, 10).double())
