"""Shared fixtures of the Python binding tests.

The in-tree run (CTest python_core) sets PYTHONPATH=bindings/python/src and
S2FT_LIBRARY to the build's libs2ft.so; an installed package needs neither.
"""

import os
import pathlib

import numpy as np
import pytest

import s2ft

#: The repository root (bindings/python/tests/../../..).
REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture
def ctx():
    """A CPU context, closed after the test."""
    with s2ft.Context.cpu() as context:
        yield context


@pytest.fixture
def rng():
    """A seeded NumPy generator (each test gets the same stream)."""
    return np.random.default_rng(20240611)


@pytest.fixture
def realdata():
    """The stories260K Hugging Face folder ($S2FT_TEST_DATA or ../shared/data), or a skip saying why."""
    base = os.environ.get("S2FT_TEST_DATA") or str(REPO.parent / "shared" / "data")
    folder = pathlib.Path(base) / "stories260K-hf"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("realdata: %s is absent (set S2FT_TEST_DATA to the folder holding stories260K-hf)" % folder)
    return folder


def nan_array(shape, dtype=np.float32):
    """An array of NaN: outputs are poisoned so that an unwritten element fails the comparison."""
    return np.full(shape, np.nan, dtype=dtype)
