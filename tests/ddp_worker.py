"""Test-side wrapper for tests/test_ddp.py, run under torchrun instead of ``-m pipelines.train``:

    python -m torch.distributed.run ... tests/ddp_worker.py DUMP_DIR <pipelines.train flags>

It runs ``pipelines.train.main`` unchanged, but records the data items each rank reads (by wrapping
``PairDataset.__getitem__``) and, when training ends, writes ``DUMP_DIR/rank<r>.pt`` with that rank's
parameters, buffers and items: what the test compares across ranks. Not a test module itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pipelines import train as pipeline
from recon.data.dataset import PairDataset

dump_dir, argv = Path(sys.argv[1]), sys.argv[2:]
items: list[int] = []
_getitem = PairDataset.__getitem__


def _recording_getitem(self: PairDataset, index: int):
    items.append(int(index))
    return _getitem(self, index)


class _DumpingHooks(pipeline.TrainProgress):
    def on_end(self, trainer, summary) -> None:
        super().on_end(trainer, summary)
        if summary is None:
            return
        dump_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"rank": trainer.rank, "world": trainer.world, "step": trainer.step,
                    "params": {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
                    "items": torch.tensor(items, dtype=torch.int64).reshape(-1, trainer.cfg.batch_size)},
                   dump_dir / f"rank{trainer.rank}.pt")


PairDataset.__getitem__ = _recording_getitem
pipeline.TrainProgress = _DumpingHooks
pipeline.main(argv)
