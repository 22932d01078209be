"""A libs2ft object that saves to and loads from a file, held as bytes (for pickles and state dicts).

The C API saves selections and optimizer state to paths only; these two
functions go through a private temporary folder so the bytes can travel in
a pickle or a torch state_dict.
"""

import os
import tempfile

__all__ = ["saved_bytes", "load_from_bytes"]


def saved_bytes(save, file_name):
    """The bytes ``save(path)`` writes to a file named ``file_name``."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, file_name)
        save(path)
        with open(path, "rb") as f:
            return f.read()


def load_from_bytes(load, data, file_name):
    """``load(path)`` on ``data`` written to a file named ``file_name``; returns what ``load`` returns."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, file_name)
        with open(path, "wb") as f:
            f.write(data)
        return load(path)
