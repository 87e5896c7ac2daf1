"""The batch transform job on Ray Data: ``run_transform(cfg, s3) -> summary``.

Modules, one concept each::

    listing.py  driver: the input listing (parallel by prefix) or a user-given key list
    state.py    incremental state: done-ness, compaction into one indexed object, fencing
    plan.py     driver: listing -> styles -> drop done ones (incremental) -> the work table
    fence.py    lease validity for workers (clock actor, write guard), exit code 76
    stages.py   PrepareFn (task) -> NetworkFn (actor pool) -> FinishFn (task); the work rows
    pipeline.py the stages wired into one Ray Data pipeline (never fused into the actors)
    photo.py    the pixel halves: reduced decode + locate, full-size decode + paste back
    sandbox.py  the watchdog child process that runs the pixel halves (poison photos)
    writer.py   one output object, with its ContentType
    sink.py     one manifest part per write task
    sizing.py   CPUs per network actor from the network's measured share of the work
    job.py      this driver: checks, lease, pipeline, run summary, exit codes

Pipeline::

    driver: check access -> lease (token registered) -> plan -> blocks of ``ray.block_rows``
    tasks  (read_num_cpus):    read bytes; reduced decode, locate, align crops     [PrepareFn]
    actors (network_num_cpus): the network on crops batched across photos         [NetworkFn]
    tasks  (write_num_cpus):   full-size decode, paste back, encode, write OUT/key  [FinishFn]
    datasink:                  one manifest Parquet part per block (fused with the above)
    driver: lease check -> compact the state -> run summary JSON -> release the lease

What passes between stages: encoded input bytes, face geometry (full-size pixels) and the
aligned crops (then the edited crops and masks); never a decoded photo. See
:mod:`beardnet.infer.stages` for the columns.

Every photo is handled on its own: any failure becomes that row's ``error`` (with a reason) and
never fails the batch or the job. A photo that crashes or hangs the process decoding it is
tried once more in a fresh sandbox process, then recorded (``worker_crash``, ``timeout``).
Objects are written before the manifest part that names them, so a run killed half way leaves
outputs that are at worst re-done by ``--incremental``, never rows that claim an output that
is not there.

Ray Data settings relied on: ``max_errored_blocks = 0`` (no photo raises out of a UDF, so a
block error is a bug or lost infrastructure, and must fail the run rather than silently drop
the block's photos); Ray's default task retries for system failures only (a lost worker or
node re-runs its block: writes are idempotent, same key and bytes); no retries on exceptions;
actor pool restarts as Ray Data sets them (``max_restarts=-1``). Ray has no per-task timeout:
the per-photo limit (``image.photo_timeout_s``) is enforced by the sandbox.

Exit codes of the CLI (:data:`EXIT_CODES`): 0 done (even with per-photo errors; the summary
counts them), 2 bad configuration, 3 storage not reachable / no permission, 4 model artifact,
75 another run holds the output's lease (busy, try later), 76 the run lost its lease mid-run
and stopped writing (no summary; run again), 1 anything else.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from beardnet.infer import fence, runlog, sizing, state
from beardnet.infer.config import TransformConfig
from beardnet.infer.errors import (  # noqa: F401 - re-exported: the CLI and tests use them
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_LEASE,
    EXIT_LEASE_LOST,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_STORAGE,
    TransformFailed,
    short_error,
)
from beardnet.infer.keys import nested_rel
from beardnet.infer.pipeline import build_pipeline, check_memory
from beardnet.infer.plan import block_bounds, init_rows, plan_keys, record_skipped
from beardnet.infer.sink import manifest_sink

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ driver
def _progress_enabled(mode: str) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    return sys.stderr.isatty() and not os.environ.get("CI")


def _check_access(input_uri: str, output: str, run_id: str, s3: Any) -> None:
    """Fail before any work when input cannot be listed or output cannot be written."""
    from beardnet import storage

    try:
        if storage.is_s3(input_uri):
            bucket, _ = storage.split_s3(input_uri)
            storage.boto3_client(s3).head_bucket(Bucket=bucket)
        elif not os.path.isdir(storage.local_path(input_uri)):
            raise FileNotFoundError(f"no such folder {storage.local_path(input_uri)}")
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot read input {input_uri}: {short_error(e)}", EXIT_STORAGE) from None
    probe = runlog.meta_uri(output, f".probe-{run_id}")
    try:
        if storage.is_s3(output):  # some servers create a missing bucket on the first write
            bucket, _ = storage.split_s3(output)
            storage.boto3_client(s3).head_bucket(Bucket=bucket)
        storage.write_bytes(probe, b"probe", s3=s3)
        storage.delete(probe, s3=s3)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(
            f"cannot write to output {output}: {short_error(e)}", EXIT_STORAGE
        ) from None



def _isolation(cfg: TransformConfig) -> dict[str, Any] | None:
    """The stages' sandbox settings (None: pixel work in the Ray worker itself)."""
    from beardnet.infer.sandbox import POISON_ENV, parse_poison

    if not cfg.image.isolate:
        return None
    return {"timeout_s": cfg.image.photo_timeout_s,
            "poison": parse_poison(os.environ.get(POISON_ENV))}


def _transform_options(cfg: TransformConfig, crop_size: int) -> Any:
    """``beardnet.infer.transform.TransformOptions`` from the config (only fields it has)."""
    import dataclasses

    from beardnet.infer.transform import TransformOptions

    wanted = {
        "jpeg_quality": cfg.image.jpeg_quality,
        "png_compress_level": cfg.image.png_compress_level,
        "min_face_px": cfg.image.min_face_px,
        "max_pixels": cfg.image.max_pixels,
        "max_faces": cfg.image.max_faces,
        "crop_size": crop_size,
        "feather_px": cfg.image.feather_px,
        "faces": cfg.image.faces,
    }
    names = {f.name for f in dataclasses.fields(TransformOptions)}
    kwargs = {k: v for k, v in wanted.items() if k in names and v is not None}
    return TransformOptions(**kwargs)


def run_transform(
    cfg: TransformConfig,
    s3: Any = None,
    *,
    on_lease: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Run the transform job described by ``cfg``; returns the run summary (also written to
    ``OUT/_beardnet/runs/RUN_ID.json``). Raises :class:`TransformFailed` on job-level failure."""
    from beardnet.infer.lease import ConditionalWritesUnsupported, Lease, LeaseHeld

    t_start = time.time()
    try:
        cfg.check_paths()
    except ValueError as e:
        raise TransformFailed(str(e), EXIT_CONFIG) from None
    s3 = s3 if s3 is not None else cfg.s3.settings()
    job = cfg.job
    inp, out = job.input.rstrip("/"), job.output.rstrip("/")
    if nested_rel(inp, out) == "" or nested_rel(out, inp) is not None:
        raise TransformFailed(
            f"output {out} must not be the input {inp} or contain it", EXIT_CONFIG
        )
    run_id = job.run_id or runlog.new_run_id()

    # model metadata on the driver: id, categories, crop size (the actors load it again)
    try:
        from beardnet.model import load

        model = load(job.model, s3=s3)
    except Exception as e:  # noqa: BLE001 - reported as a job-level failure
        raise TransformFailed(f"cannot load model {job.model or '(shipped)'}: {short_error(e)}",
                              EXIT_MODEL) from None
    model_id, categories, crop_size = model.model_id, model.categories, int(model.input_size)
    del model

    _check_access(inp, out, run_id, s3)
    lease = Lease(out, run_id, ttl_s=job.lease_ttl_s, s3=s3, no_lease=job.no_lease)
    try:
        lease.acquire()
    except LeaseHeld as e:
        raise TransformFailed(str(e), EXIT_LEASE) from None
    except ConditionalWritesUnsupported as e:
        raise TransformFailed(str(e), EXIT_STORAGE) from None
    lease.start_renewing()
    token = fence.lease_token(lease)
    pusher = None
    try:
        state.register_token(out, token, run_id, s3=s3)
        if on_lease is not None:
            on_lease(lease)
        t_list = time.time()
        table, listed, skipped_keys = plan_keys(cfg, s3, categories, model_id)
        skipped = len(skipped_keys)
        list_s = time.time() - t_list
        log.info("run %s: %d keys listed, %d already done, %d to process (listing %.1fs)",
                 run_id, listed, skipped, table.num_rows, list_s)
        work = init_rows(table, run_id, model_id, token)
        aggs: list[dict[str, Any]] = []
        sized: dict[str, Any] = {}
        if work.num_rows:
            pusher, guard = _start_fence(cfg, s3, lease, token, run_id)
            try:
                aggs = _execute(cfg, s3, run_id, crop_size, work, token, guard, sized)
            except Exception as e:
                if pusher.lost or lease.lost:
                    raise _lost(run_id, pusher.lost or lease.lost) from None
                if isinstance(e, TransformFailed):
                    raise
                raise TransformFailed(f"run {run_id} failed: {short_error(e)}") from e
            pusher.stop()
        # the summary and the compacted state are written only after a successful check
        try:
            fence.lease_check(lease)
        except fence.LeaseLost as e:
            raise _lost(run_id, str(e)) from None
        if job.record_skipped and skipped:
            record_skipped(cfg, s3, run_id, model_id, skipped_keys, token)
        t_c = time.time()
        state.compact(out, s3)
        compact_s = time.time() - t_c
    finally:
        if pusher is not None:
            pusher.stop()
        lost = lease.lost
        lease.release()
    wall = time.time() - t_start
    agg = runlog.merge_aggregates(aggs)
    if skipped:
        agg["status"]["skipped_existing"] = agg["status"].get("skipped_existing", 0) + skipped
    processed = agg["images"]
    summary = {
        "run_id": run_id,
        "input": inp,
        "output": out,
        "model": model_id,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
        "wall_s": round(wall, 3),
        "list_s": round(list_s, 3),
        "keys_listed": listed,
        "keys_skipped": skipped,
        "images": processed,
        "images_per_s": round(processed / wall, 3) if wall > 0 else 0.0,
        "status": agg["status"],
        "errors": agg["status"].get("error", 0),
        "error_reasons": agg["error_reasons"],
        "faces": agg["faces"],
        "faces_small": agg["faces_small"],
        "bytes_in": agg["bytes_in"],
        "bytes_out": agg["bytes_out"],
        "stage_s": {k: round(v, 4) for k, v in agg["stage_s"].items()},
        "stage_share": {k: round(v, 4) for k, v in runlog.stage_shares(agg["stage_s"]).items()},
        "config": cfg.public_dict(),
        "complete": processed == work.num_rows,
        "lease_lost": lost,
        "lease_token": token,
        "compact_s": round(compact_s, 3),
        "sizing": sized,
    }
    summary["summary_uri"] = runlog.write_summary(out, run_id, summary, s3=s3)
    return summary



def _lost(run_id: str, why: str | None) -> TransformFailed:
    return TransformFailed(
        f"run {run_id}: {why or 'lease lost'}; it stopped writing (its manifest parts after the "
        "loss are ignored by readers); run again later", EXIT_LEASE_LOST)


def _start_fence(cfg: TransformConfig, s3: Any, lease: Any, token: int, run_id: str):
    """The lease clock actor, the driver thread feeding it, and the workers' guard."""
    from beardnet.raysession import init_ray

    r = cfg.ray
    init_ray(num_cpus=r.num_cpus, object_store_mb=r.object_store_mb, s3=s3)
    ttl = float(cfg.job.lease_ttl_s)
    clock = fence.start_clock(token, 0.0)
    pusher = fence.ClockPusher(lease, clock, fence.push_period(ttl)).start()
    # without a lease (--no-lease) there is no lease object to compare a manifest part with
    store_check = None if cfg.job.no_lease else {"output": cfg.job.output.rstrip("/"),
                                                 "run_id": run_id, "s3": s3}
    guard = fence.WriteGuard(clock, token, wait_s=min(ttl / 6.0, 5.0), store_check=store_check)
    return pusher, guard


def _execute(cfg, s3, run_id: str, crop_size: int, work, token: int = 0,
             guard: Any = None, sized: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Build and run the Ray Data pipeline; returns the per-part aggregates (the actor sizing
    chosen goes into ``sized``)."""
    import ray
    from ray.data import DataContext

    from beardnet.raysession import init_ray

    sized = sized if sized is not None else {}
    r = cfg.ray
    init_ray(num_cpus=r.num_cpus, object_store_mb=r.object_store_mb, s3=s3)
    total = float(ray.cluster_resources().get("CPU", 0.0))
    sized.update(sizing.size_network(r, total, cfg.job.output, s3))
    net_cpus = sized["network_num_cpus"]
    need = r.network_actors * net_cpus + r.read_num_cpus + r.write_num_cpus
    if need > total + 1e-9:
        raise TransformFailed(
            f"ray: network_actors x network_num_cpus ({r.network_actors} x "
            f"{net_cpus}) + read_num_cpus ({r.read_num_cpus}) + write_num_cpus "
            f"({r.write_num_cpus}) = {need:g} CPUs, but the cluster has {total:g}: the actor "
            "pool would starve the read and write tasks and the pipeline would hang",
            EXIT_CONFIG,
        )
    _check_resources(ray.cluster_resources(), r,
                     {n["NodeID"]: float(n["Resources"].get("memory", 0.0))
                      for n in ray.nodes() if n.get("Alive")})
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = _progress_enabled(r.progress)
    ctx.verbose_progress = False
    opts = _transform_options(cfg, crop_size)
    n = work.num_rows
    blocks = [work.slice(i, k) for i, k in block_bounds(n, r.block_rows)]
    threads = r.torch_threads or max(1, round(net_cpus))
    isolate = _isolation(cfg)
    # Ray Data settings relied on (see the module docstring): Ray's default task retries
    # (system failures only: a lost worker or node; a photo cannot kill a worker, its sandbox
    # dies instead), no retries on exceptions, max_errored_blocks 0 (a block error is a bug).
    ctx.max_errored_blocks = 0
    ds = build_pipeline(cfg, s3, opts, blocks, net_cpus, threads, isolate, guard)
    sink = manifest_sink(cfg.job.output, run_id, s3, token, guard)
    # same CPUs and resources as the finish step, so Ray Data fuses them: objects, then their
    # manifest part, in one task
    sink_args: dict[str, Any] = {"num_cpus": r.write_num_cpus}
    if r.task_resources:
        sink_args["resources"] = dict(r.task_resources)
    ds.write_datasink(sink, ray_remote_args=sink_args)
    return sink.aggregates


def _check_resources(cluster: dict[str, float], r: Any,
                     node_memory: dict[str, float] | None = None) -> None:
    """Custom resources the config asks for must exist in the cluster, and some node must hold
    a read task's memory (``node_memory``: node id -> Ray memory in bytes); else Ray waits for
    a node that never comes: the run would hang."""
    if node_memory is not None:
        why = check_memory(node_memory, r)
        if why:
            raise TransformFailed(why, EXIT_CONFIG)
    for field, need, count in (("ray.network_resources", r.network_resources, r.network_actors),
                               ("ray.task_resources", r.task_resources, 1)):
        for name, amount in need.items():
            have = float(cluster.get(name, 0.0))
            if have + 1e-9 < amount * count:
                raise TransformFailed(
                    f"{field}: {name}={amount:g} x {count} but the cluster has {have:g} of "
                    f"{name!r} (start a node with --resources='{{\"{name}\": N}}')",
                    EXIT_CONFIG,
                )


def demo_transform(
    input_uri: str, output_uri: str, model_uri: str | None, s3: Any = None, **job: Any
) -> dict[str, Any]:
    """The transform as ``beardnet demo`` runs it: small blocks, no progress bar by default."""
    cfg = TransformConfig.model_validate(
        {
            "job": {"input": input_uri, "output": output_uri, "model": model_uri, **job},
            "ray": {"block_rows": 16, "read_batch_size": 4, "progress": "auto"},
        }
    )
    return run_transform(cfg, s3)
