"""Planning an incremental run over a million keys: seconds and driver memory.

In a fresh child process (so its peak RSS is the planner's alone): a generated listing of
``n`` keys (1,000 folders; ETag, size, mtime) and generated state for all of them (10 % with
another ETag: replaced photos) written as one manifest part, compacted into the state object
(timed: ``plan_compact_s``), then :func:`beardnet.infer.plan.plan_keys` with
``--incremental`` against it (timed: ``plan_1m_s``; reads the state object, joins, filters).
``plan_1m_peak_mb`` is the child's ``VmHWM`` (generation included). Targets: < 60 s, < 1 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from typing import Any

_CHILD = r"""
import json, sys, time, types
import pyarrow as pa, pyarrow.compute as pc
from beardnet.infer import runlog, state
from beardnet.infer.config import TransformConfig
from beardnet.infer.plan import plan_keys
n, root = int(sys.argv[1]), sys.argv[2]
out = root + "/out"
idx = pa.array(range(n), pa.int64())
keys = pc.binary_join_element_wise("d", pc.cast(pc.divide(idx, 1000), pa.string()), "/photo",
                                   pc.cast(idx, pa.string()), ".jpg", "")
etag = pc.binary_join_element_wise("etag", pc.cast(idx, pa.string()), "")
listing = pa.table({"key": keys, "size": pc.add(idx, 1000), "etag": etag,
                    "mtime": pa.array([1.7e9] * n, pa.float64())})
old = pc.if_else(pc.equal(pc.bit_wise_and(idx, 7), 3), pc.binary_join_element_wise(etag, "x", ""), etag)
given = {"key": keys, "status": pa.array(["ok"] * n), "model": pa.array(["m1"] * n),
         "run_id": pa.array(["r0"] * n), "style": pa.array(["full_beard"] * n),
         "version": old, "lease_token": pa.array([1] * n, pa.int64())}
sch = runlog.manifest_schema()
rows = pa.Table.from_arrays([given[f.name].cast(f.type) if f.name in given
                             else pa.nulls(n, f.type) for f in sch], schema=sch)
runlog.write_part(out, "r0", rows, part=state.part_name(1, "gen"))
del rows
t0 = time.perf_counter(); state.compact(out); compact_s = time.perf_counter() - t0
cfg = TransformConfig.model_validate({"job": {"input": root + "/in", "output": out,
                                              "incremental": True, "style": "full_beard"}})
cats = types.SimpleNamespace(names=["none", "full_beard"])
t0 = time.perf_counter()
table, listed, skipped = plan_keys(cfg, None, cats, "m1", listing=listing)
plan_s = time.perf_counter() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"n": n, "plan_s": plan_s, "compact_s": compact_s, "to_do": table.num_rows,
                  "skipped": len(skipped), "listed": listed, "peak_mb": int(hwm) / 1024}))
"""


def run(report: Any, *, n: int = 1_000_000) -> dict[str, Any]:
    """Run the planner bench in a child process and record its figures."""
    import os

    with tempfile.TemporaryDirectory(prefix="beardnet-plan-") as root:
        root_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root_dir, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])}
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", _CHILD, str(n), root], capture_output=True,
                           text=True, env=env, timeout=1800, check=False)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"plan bench child failed: {r.stderr[-2000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["child_wall_s"] = wall
    tag = "1m" if n == 1_000_000 else f"{n // 1000}k"
    report.add(f"plan_{tag}_s", res["plan_s"], "s",
               note=f"{n} keys listed, {res['skipped']} done, {res['to_do']} to do (target < 60)")
    report.add(f"plan_{tag}_peak_mb", res["peak_mb"], "MB",
               note="planner process peak RSS, generation included (target < 1024)")
    report.add(f"plan_{tag}_compact_s", res["compact_s"], "s",
               note="merge one 1M-row part into the state object")
    report.details["plan"] = res
    return res
