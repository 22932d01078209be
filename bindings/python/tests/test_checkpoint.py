"""Checkpoint: listing, zero-copy views checked against the safetensors bytes, writes with progress,
models from checkpoints. A synthetic one-file checkpoint always; stories260K (label realdata style)
when ../shared/data or $S2FT_TEST_DATA has it."""

import json
import struct

import numpy as np
import pytest

import s2ft

_NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64}


def read_safetensors(path):
    """{name: (dtype name, shape, raw bytes)} parsed from a safetensors file, independently of libs2ft."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = (info["dtype"], tuple(info["shape"]), data[8 + n + begin:8 + n + end])
    return out


def write_safetensors(path, tensors):
    """Writes {name: (dtype name, NumPy array)} as a safetensors file (8-byte aligned data)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, array) in tensors.items():
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        pad = (-len(raw)) % 8
        blobs.append(raw + b"\0" * pad)
        header[name]["data_offsets"][1] = offset + len(raw)
        offset += len(raw) + pad
    text = json.dumps(header).encode()
    text += b" " * ((-len(text)) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def mapped(path):
    """True when ``path`` is memory-mapped in this process (Linux /proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        return any(line.rstrip().endswith(str(path)) for line in maps)


def as_numpy(dtype, shape, raw):
    """The NumPy array of safetensors bytes (bfloat16 as uint16 bit patterns)."""
    return np.frombuffer(raw, dtype=_NUMPY_DTYPES[dtype]).reshape(shape)


@pytest.fixture
def one_file(tmp_path, rng):
    """A single-file checkpoint with F32, BF16 and I64 tensors."""
    path = tmp_path / "tiny.safetensors"
    bf16 = (rng.standard_normal((3, 5)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    write_safetensors(path, {
        "a.weight": ("F32", rng.standard_normal((4, 6)).astype(np.float32)),
        "b.weight": ("BF16", bf16),
        "ids": ("I64", np.arange(7, dtype=np.int64)),
    })
    return path


def test_one_file_listing_views_and_lifetime(one_file):
    stored = read_safetensors(one_file)
    ckpt = s2ft.Checkpoint(one_file)
    assert len(ckpt) == 3 and ckpt.files == ["tiny.safetensors"]
    assert ckpt.config is None and ckpt.config_dict() is None
    infos = {i.name: i for i in ckpt.tensors()}
    assert infos["b.weight"] == s2ft.TensorInfo("b.weight", "BF16", (3, 5), 30)
    assert infos["ids"].dtype == "I64" and infos["ids"].shape == (7,)
    assert "a.weight" in ckpt and "nope" not in ckpt and sorted(ckpt) == sorted(stored)
    with pytest.raises(s2ft.StateError):
        ckpt.shape  # no config.json
    view = ckpt.tensor("a.weight")
    assert view.dtype == s2ft.DType.F32 and view.shape == (4, 6) and view.name == "a.weight"
    array = view.numpy()
    np.testing.assert_array_equal(array, as_numpy(*stored["a.weight"]))
    np.testing.assert_array_equal(ckpt.tensor("b.weight").numpy(), as_numpy(*stored["b.weight"]))
    raw = ckpt.tensor_data("ids")
    assert raw.readonly and bytes(raw) == stored["ids"][2]
    # Zero-copy: the view and the raw bytes are the same memory.
    assert np.frombuffer(ckpt.tensor_data("a.weight"), np.float32).ctypes.data == view.data_ptr
    with pytest.raises(s2ft.DtypeError):
        ckpt.tensor("ids")
    with pytest.raises(s2ft.InvalidArgumentError, match="nope"):
        ckpt.tensor("nope")
    # Views keep the mapping: closing first is safe, and writes stay in this process.
    ckpt.close()
    assert mapped(one_file)
    array[0, 0] = 42.0
    assert view.numpy()[0, 0] == 42.0 and bytes(raw) == stored["ids"][2]
    with pytest.raises(s2ft.StateError, match="closed"):
        ckpt.tensor("a.weight")
    del view, array, raw
    assert not mapped(one_file)  # the last view took the checkpoint with it
    assert read_safetensors(one_file)["a.weight"] == stored["a.weight"]  # the file is unchanged


def test_views_export_to_torch_zero_copy(one_file):
    torch = pytest.importorskip("torch", reason="exporting bfloat16 views needs PyTorch")
    stored = read_safetensors(one_file)
    with s2ft.Checkpoint(one_file) as ckpt:
        view = ckpt.tensor("b.weight")
        t = torch.from_dlpack(view)
    del view  # the torch tensor alone keeps the checkpoint mapped
    assert t.dtype == torch.bfloat16 and tuple(t.shape) == (3, 5) and mapped(one_file)
    assert t.view(torch.int16).numpy().view(np.uint16).tobytes() == stored["b.weight"][2]
    del t
    assert not mapped(one_file)


def test_write_with_replacements_and_progress(tmp_path, one_file, rng):
    calls = []
    new = rng.standard_normal((4, 6)).astype(np.float32)
    with s2ft.Checkpoint(one_file) as ckpt:
        ckpt.write(tmp_path / "out", {"a.weight": new}, progress=lambda done, total: calls.append((done, total)))
        with pytest.raises(ZeroDivisionError):
            ckpt.write(tmp_path / "out2", progress=lambda done, total: 1 / 0)
        with pytest.raises(s2ft.ShapeError):
            ckpt.write(tmp_path / "out3", {"a.weight": new[:2]})
    assert calls and calls[-1][0] == calls[-1][1] and all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))
    written = read_safetensors(tmp_path / "out" / "tiny.safetensors")
    np.testing.assert_array_equal(as_numpy(*written["a.weight"]), new)
    assert written["ids"] == read_safetensors(one_file)["ids"]


def test_realdata_stories260k(realdata, tmp_path, ctx):
    stored = read_safetensors(realdata / "model.safetensors")
    with s2ft.Checkpoint(realdata) as ckpt:
        shape = ckpt.shape
        assert shape == s2ft.ModelShape(n_layers=5, d_model=64, n_heads=8, n_kv_heads=4, head_dim=8, d_ff=172)
        assert ckpt.config_dict()["model_type"] == "llama"
        assert ckpt.files == ["model.safetensors"]
        assert sorted(ckpt.names()) == sorted(stored) and len(ckpt) == len(stored)
        for info in ckpt.tensors():
            dtype, dims, raw = stored[info.name]
            assert (info.dtype, info.shape, info.nbytes) == (dtype, dims, len(raw))
            if dtype in ("F32", "F16", "BF16") and 1 <= len(dims) <= 4:
                np.testing.assert_array_equal(ckpt.tensor(info.name).numpy(), as_numpy(dtype, dims, raw))
        down = "model.layers.3.mlp.down_proj.weight"
        assert ckpt.tensor(down).shape == shape.weight_shape(s2ft.Target.DOWN)

        # Merge an adapter through a model over the checkpoint, write, read back.
        adapter = s2ft.Adapter(shape, "rd")
        delta = np.full((shape.d_model, 2), 0.5, np.float32)
        adapter.set(3, s2ft.Target.DOWN, [10, 100], delta, base=ckpt.tensor(down))
        with s2ft.Model.from_checkpoint(ctx, ckpt) as model:
            model.apply(adapter)
            ckpt.write(tmp_path / "merged")
            model.remove()
        np.testing.assert_array_equal(ckpt.tensor(down).numpy(), as_numpy(*stored[down]))
    merged = read_safetensors(tmp_path / "merged" / "model.safetensors")
    want = as_numpy(*stored[down]).astype(np.float64)
    want[:, [10, 100]] += 0.5
    np.testing.assert_array_equal(as_numpy(*merged[down]), want.astype(np.float32))
    assert (tmp_path / "merged" / "config.json").read_bytes() == (realdata / "config.json").read_bytes()
