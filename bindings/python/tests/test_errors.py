"""Every error path raises an S2FTError subclass with the status, its name and a message; none crashes."""

import pickle

import numpy as np
import pytest

import s2ft
from s2ft import _capi

SHAPE = s2ft.ModelShape(n_layers=1, d_model=8, n_heads=2, n_kv_heads=1, head_dim=4, d_ff=12)


def raises(cls, status, call, match=None):
    """Runs ``call`` and checks the error's class, status, status name and message."""
    with pytest.raises(cls, match=match) as info:
        call()
    err = info.value
    assert isinstance(err, s2ft.S2FTError)
    assert err.status == status and err.status_name == s2ft.status_string(status)
    assert err.message and err.message in str(err)
    return err


def test_error_classes_and_library_messages(ctx):
    x = np.zeros((3, 4), np.float32)
    w = np.zeros((5, 4), np.float32)
    sl = s2ft.Slice.range(s2ft.Axis.COLUMNS, 0, 2)
    err = raises(s2ft.ShapeError, _capi.S2FT_ERR_SHAPE,
                 lambda: s2ft.forward_partial(ctx, sl, x, w, np.zeros((3, 4), np.float32)), match="y")
    assert "s2ft_forward_partial" in err.message  # the library's own text, read right after the call
    assert s2ft.last_error() == err.message
    s2ft.clear_error()
    assert s2ft.last_error() == ""
    raises(s2ft.DtypeError, _capi.S2FT_ERR_DTYPE,
           lambda: s2ft.forward_partial(ctx, sl, x, w.astype(np.float16), np.zeros((3, 5), np.float32)))
    raises(s2ft.InvalidArgumentError, _capi.S2FT_ERR_INVALID_ARGUMENT,
           lambda: s2ft.forward_partial(ctx, s2ft.Slice.range("columns", 3, 5), x, w, np.zeros((3, 5), np.float32)))
    raises(s2ft.InvalidArgumentError, _capi.S2FT_ERR_INVALID_ARGUMENT,
           lambda: s2ft.ModelShape(1, 8, 3, 2, 4, 12).check(), match="n_kv_heads|n_heads")
    raises(s2ft.FileIOError, _capi.S2FT_ERR_IO, lambda: s2ft.Adapter.load("/nonexistent/a.safetensors"))
    raises(s2ft.FileIOError, _capi.S2FT_ERR_IO, lambda: s2ft.Checkpoint("/nonexistent/folder"))
    assert issubclass(s2ft.FileIOError, OSError) and issubclass(s2ft.DtypeError, TypeError)
    assert issubclass(s2ft.InvalidArgumentError, ValueError) and issubclass(s2ft.StateError, RuntimeError)


def test_format_and_unsupported(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"{}")
    raises(s2ft.FormatError, _capi.S2FT_ERR_FORMAT, lambda: s2ft.Adapter.load(bad))
    raises(s2ft.FormatError, _capi.S2FT_ERR_FORMAT, lambda: s2ft.Checkpoint(bad))
    (tmp_path / "sel.json").write_text('{"format": "nope"}')
    raises(s2ft.FormatError, _capi.S2FT_ERR_FORMAT, lambda: s2ft.Selection.load(tmp_path / "sel.json"))
    if s2ft.device_count(s2ft.DeviceType.CUDA) == 0:
        raises(s2ft.UnsupportedError, _capi.S2FT_ERR_UNSUPPORTED, lambda: s2ft.Context.cuda(0))
    with s2ft.Context.cpu() as ctx:
        raises(s2ft.UnsupportedError, _capi.S2FT_ERR_UNSUPPORTED, lambda: ctx.set_stream(1234))
        raises(s2ft.UnsupportedError, _capi.S2FT_ERR_UNSUPPORTED, lambda: ctx.set_delta_path(s2ft.DeltaPath.SPARSE))


def test_bad_arguments_are_refused_before_c(ctx):
    x = np.zeros((3, 4), np.float32)
    sl = s2ft.Slice.range(s2ft.Axis.COLUMNS, 0, 2)
    invalid, status = s2ft.InvalidArgumentError, _capi.S2FT_ERR_INVALID_ARGUMENT
    raises(invalid, status, lambda: s2ft.forward_partial(None, sl, x, x, x), match="ctx is None")
    raises(invalid, status, lambda: s2ft.forward_partial("cpu", sl, x, x, x), match="expected a Context")
    raises(invalid, status, lambda: s2ft.forward_partial(ctx, None, x, x, x), match="Slice")
    raises(invalid, status, lambda: s2ft.forward_partial(ctx, sl, [[1.0]], x, x), match="list")
    raises(invalid, status, lambda: s2ft.Slice("diagonal", 0, 1), match="Axis")
    raises(invalid, status, lambda: s2ft.Slice.lines(s2ft.Axis.ROWS, [1, "2"]), match=r"indices\[1\]")
    raises(invalid, status, lambda: s2ft.Statistics(ctx, SHAPE).get(2**31, 0, 0), match="layer")
    raises(invalid, status, lambda: s2ft.Statistics(ctx, (1, 8, 2, 1, 4, 12)), match="ModelShape")
    raises(invalid, status, lambda: s2ft.select(ctx, SHAPE, ratio=[0.1]), match="ratio")
    raises(invalid, status, lambda: s2ft.select(ctx, SHAPE, targets=["sideways"]), match="Target")
    raises(invalid, status, lambda: s2ft.Adapter(SHAPE, "x" * 300), match="name")
    raises(invalid, status, lambda: s2ft.Adapter(SHAPE, "a\0b"), match="NUL")
    raises(invalid, status, lambda: s2ft.Adapter(SHAPE, 3), match="str")
    raises(invalid, status, lambda: s2ft.Adapter.fuse([None]), match="adapters")
    raises(invalid, status, lambda: s2ft.permute(ctx, None, 0, {}), match="selection")
    raises(invalid, status, lambda: s2ft.permute(ctx, s2ft.select(ctx, SHAPE), 0, {"w": x}), match="unknown weights")
    # None where the C function takes a tensor: the library's own message.
    err = raises(invalid, status, lambda: s2ft.forward_partial(ctx, sl, None, x, x))
    assert "x" in err.message


def test_tensor_rank_dtype_and_device_checks(ctx):
    shape, dtype = s2ft.ShapeError, s2ft.DtypeError
    raises(shape, _capi.S2FT_ERR_SHAPE, lambda: s2ft.as_tensor(np.zeros((1, 1, 1, 1, 1), np.float32)), match="at most 4")
    raises(dtype, _capi.S2FT_ERR_DTYPE, lambda: s2ft.as_tensor(np.zeros(3, np.float64)), match="float64")
    raises(dtype, _capi.S2FT_ERR_DTYPE, lambda: s2ft.as_tensor(np.zeros(3, np.int32)), match="int32")
    raises(dtype, _capi.S2FT_ERR_DTYPE, lambda: s2ft.as_tensor(np.zeros(3, np.complex64)), match="complex64")
    readonly = np.zeros((3, 4), np.float32)
    readonly.flags.writeable = False
    assert s2ft.as_tensor(readonly).readonly  # read through __array_interface__
    sl = s2ft.Slice.range(s2ft.Axis.COLUMNS, 0, 2)
    x = np.zeros((3, 4), np.float32)
    raises(s2ft.InvalidArgumentError, _capi.S2FT_ERR_INVALID_ARGUMENT,
           lambda: s2ft.forward_partial(ctx, sl, x, np.zeros((4, 4), np.float32), readonly), match="read-only")
    # A CUDA descriptor on a CPU context: the library refuses it (DeviceError) without touching the memory.
    fake = s2ft.TensorView.from_pointer(0x1000, s2ft.DType.F32, (3, 4), device=(s2ft.DeviceType.CUDA, 0))
    raises(s2ft.DeviceError, _capi.S2FT_ERR_DEVICE,
           lambda: s2ft.forward_partial(ctx, sl, fake, np.zeros((4, 4), np.float32), np.zeros((3, 4), np.float32)))


def test_closed_handles_raise_state_errors(ctx):
    state, status = s2ft.StateError, _capi.S2FT_ERR_STATE
    other = s2ft.Context.cpu()
    other.close()
    other.close()  # idempotent
    assert other.closed
    raises(state, status, lambda: other.device, match="Context is closed")
    raises(state, status, lambda: s2ft.Statistics(other, SHAPE), match="closed")
    sel = s2ft.select(ctx, SHAPE)
    sel.close()
    raises(state, status, lambda: sel.indices(0, s2ft.Target.O), match="Selection is closed")
    raises(state, status, lambda: s2ft.permute(ctx, sel, 0, {}), match="closed")
    view = s2ft.as_tensor(np.zeros(3, np.float32))
    view.release()
    view.release()
    raises(state, status, lambda: view.shape, match="released")
    raises(state, status, lambda: s2ft.as_tensor(view), match="released")


def test_errors_pickle_with_their_class():
    err = s2ft.ShapeError(_capi.S2FT_ERR_SHAPE, "x must be [2, 3]")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is s2ft.ShapeError and copy.status == err.status and copy.message == err.message
    unknown = s2ft.errors._make_error(-99, "from a newer library")
    assert type(unknown) is s2ft.S2FTError and unknown.status_name == "unknown status"
