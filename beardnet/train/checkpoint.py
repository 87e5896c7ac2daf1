"""Training checkpoints: what a ``state.pt`` holds, and finding one to resume from.

A checkpoint is a folder with ``state.pt`` (model, optimiser, EMA, sampler state, step, epoch,
elapsed training seconds), loaded with ``weights_only=True`` (no arbitrary unpickling). Ray
Train persists it to the run folder as ``checkpoint_<step>``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

CHECKPOINT_FILE = "state.pt"


def load_state(ckpt: Any) -> dict[str, Any]:
    """The ``state.pt`` of a Ray ``Checkpoint``, downloaded into a folder of this process's
    own (``as_directory`` shares one download folder between the ranks of a node, and a rank
    could read the file while another is still writing it)."""
    import torch

    tmp = tempfile.mkdtemp(prefix="beardnet-resume-")
    try:
        d = ckpt.to_directory(tmp)
        return torch.load(os.path.join(d, CHECKPOINT_FILE), map_location="cpu", weights_only=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_from_uri(uri: str, s3: Any) -> Any:
    """A Ray ``Checkpoint`` for ``uri``: a checkpoint folder (holding ``state.pt``) or a run
    folder (its latest ``checkpoint_*``)."""
    import pyarrow.fs as pafs
    from ray.train import Checkpoint

    from beardnet import storage

    fs, path = storage.resolve(uri, s3)
    info = fs.get_file_info(path.rstrip("/") + "/" + CHECKPOINT_FILE)
    if info.type == pafs.FileType.File:
        return Checkpoint(path, filesystem=fs)
    sel = pafs.FileSelector(path, allow_not_found=True)
    subs = sorted(
        i.base_name
        for i in fs.get_file_info(sel)
        if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")
    )
    for name in reversed(subs):
        cand = path.rstrip("/") + "/" + name
        if fs.get_file_info(cand + "/" + CHECKPOINT_FILE).type == pafs.FileType.File:
            return Checkpoint(cand, filesystem=fs)
    raise FileNotFoundError(f"train.resume_from: no checkpoint with {CHECKPOINT_FILE} under {uri}")


class StagedCheckpoint:
    """``with StagedCheckpoint(state) as ckpt:`` a Ray ``Checkpoint`` of ``state`` in a
    temporary folder that is removed after the block (Ray copies it on report)."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self.state = state
        self.tmp: str | None = None

    def __enter__(self) -> Any:
        import ray.train
        import torch

        if self.state is None:
            return None
        self.tmp = tempfile.mkdtemp(prefix="beardnet-ckpt-")
        torch.save(self.state, os.path.join(self.tmp, CHECKPOINT_FILE))
        return ray.train.Checkpoint.from_directory(self.tmp)

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
