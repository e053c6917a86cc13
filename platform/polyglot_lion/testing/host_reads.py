"""Count the places where a forward or backward reads a tensor's value back to Python: on a GPU each one makes
the CPU wait for every queued kernel (a sync). Counted on any device, CPU included, so a test can hold the
number down without a GPU.

    with HostReads() as reads:
        loss = answer_loss(model, inputs); loss.backward()
    reads.total, reads.where   # {(op, "file.py:line code"): count}

Counted: scalar reads (``.item()``, ``int(t)``, ``bool(t)``, ``if t:``: ``aten::_local_scalar_dense``), ops whose
output size depends on the data (``nonzero``, ``masked_select``, ``unique``, ``repeat_interleave`` without
``output_size``), and indexing with a boolean mask (which runs ``nonzero`` inside). Not counted: ``.tolist()`` of
a CPU tensor, which reads memory without an op (on a GPU it copies to the host and syncs; the forwards this is
used for have none left).
"""

from __future__ import annotations

import collections
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_DATA_DEPENDENT = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::unique",
                   "aten::_unique2", "aten::unique_consecutive", "aten::is_nonzero", "aten::equal"}


def _bool_index(args) -> bool:
    return any(isinstance(a, (list, tuple)) and any(torch.is_tensor(t) and t.dtype == torch.bool for t in a)
               for a in args)


class HostReads(TorchDispatchMode):
    """A dispatch mode that counts host reads by op and by the first frame outside torch that caused them."""

    def __init__(self):
        super().__init__()
        self.where: collections.Counter = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.where.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        if (name in _DATA_DEPENDENT or (name.startswith("aten::index") and _bool_index(args))
                or (name == "aten::repeat_interleave" and kwargs.get("output_size") is None)):
            frames = [f for f in traceback.extract_stack()
                      if "site-packages/torch/" not in f.filename and not f.filename.endswith("host_reads.py")]
            here = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno} {frames[-1].line}" if frames \
                else "autograd backward"
            self.where[(name, here)] += 1
        return func(*args, **kwargs)
