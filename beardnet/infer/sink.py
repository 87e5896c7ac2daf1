"""The manifest sink: one Parquet part per write task, after that block's photos are written.

Each part carries the run's lease token (in its rows and first in its name, see
:mod:`beardnet.infer.state`) and is written only after the lease checks out in the store
(:meth:`beardnet.infer.fence.WriteGuard.check_part`)."""

from __future__ import annotations

import os
import time
from typing import Any

from beardnet.infer import runlog
from beardnet.infer.state import part_name


def manifest_sink(output_uri: str, run_id: str, s3: Any, token: int = 0, guard: Any = None):
    """A Datasink writing one manifest part per write task; returns per-part aggregates."""
    from ray.data import Datasink

    class _ManifestSink(Datasink):
        def __init__(self) -> None:
            self.aggregates: list[dict[str, Any]] = []

        def write(self, blocks, ctx) -> dict[str, Any]:
            import pyarrow as pa

            tables = [pa.table(b) if not isinstance(b, pa.Table) else b for b in blocks]
            tables = [t for t in tables if t.num_rows]
            if not tables:
                return runlog.aggregate(runlog.manifest_schema().empty_table())
            t = pa.concat_tables([x.select(runlog.manifest_schema().names) for x in tables])
            t = t.cast(runlog.manifest_schema())
            part = part_name(
                token, f"{int(time.time() * 1000):013d}-{ctx.task_idx:05d}-{os.urandom(3).hex()}"
            )
            if guard is not None:
                guard.check_part()
            runlog.write_part(output_uri, run_id, t, part=part, s3=s3)  # storage retries
            return runlog.aggregate(t)

        def on_write_complete(self, write_result) -> None:
            self.aggregates = list(write_result.write_returns)

    return _ManifestSink()


