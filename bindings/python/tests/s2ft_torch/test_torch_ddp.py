"""DistributedDataParallel over S2FT models: two CPU processes (gloo) train the same slices as one process.

Each rank runs half of every batch; DDP averages the slice gradients, which
for a mean token loss over equal halves is the whole batch's gradient.
"""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


import torch.distributed as dist
import torch.multiprocessing as mp

import s2ft.torch as st
from s2ft_torch_helpers import batch, loss_of, tiny_model

STEPS = 3
OPTS = dict(targets=("o", "v", "down", "up"), count={"o": 1, "v": 1, "down": 5, "up": 3}, strategy="weight")


def batches():
    return [batch(80 + s, rows=4, cols=9) for s in range(STEPS)]


def make_optimizer(model, kind):
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9)
    return st.S2FTOptimizer(model, lr=0.1, kind="sgd", momentum=0.9)


def slices(model):
    return [m.weight_slice.detach().clone() for _, _, m in st.state_of(model).modules(model)]


#: (optimizer, permute): torch's SGD on contiguous slices (views of the weights), libs2ft's on index lines.
CASES = [("sgd", True), ("s2ft", False)]


def worker(rank, world, init_file, out):
    """One rank: for each case, DDP over the prepared model, half of each batch."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    try:
        results = [train_ddp(rank, world, kind, permute) for kind, permute in CASES]
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def train_ddp(rank, world, kind, permute):
    """The trained slices of one rank."""
    model = st.prepare(tiny_model(), permute=permute, **OPTS)
    if rank == 1:  # DDP must start every rank from rank 0's slices
        with torch.no_grad():
            for _, _, m in st.state_of(model).modules(model):
                m.weight_slice.add_(1.0)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = make_optimizer(model, kind)
    for ids in batches():
        half = ids.shape[0] // world
        part = ids[rank * half:(rank + 1) * half]
        loss_of(ddp, part).backward()
        opt.step()
        opt.zero_grad()
    return slices(model)


def test_two_processes_equal_one(tmp_path):
    out = str(tmp_path / "slices.pt")
    mp.spawn(worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    results = torch.load(out)
    for (kind, permute), distributed in zip(CASES, results):
        model = st.prepare(tiny_model(), permute=permute, **OPTS)
        opt = make_optimizer(model, kind)
        for ids in batches():
            loss_of(model, ids).backward()
            opt.step()
            opt.zero_grad()
        single = slices(model)
        worst = max((a - b).abs().max().item() for a, b in zip(distributed, single))
        print("DDP (2 ranks) vs one process (%s, permute=%s): max |difference| of trained slices %.3g"
              % (kind, permute, worst))
        assert worst <= 1e-6
