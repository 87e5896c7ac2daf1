"""The transform's stages wired into one Ray Data pipeline: ``build_pipeline``.

::

    prepare tasks (read_num_cpus, read_memory_mb)  ->  network actors (network_num_cpus)
        ->  finish tasks (write_num_cpus; the manifest sink is fused into them by the caller)

**Never fused into the actors.** Ray Data fuses a task stage into the actor stage after it
when their remote arguments match (same CPUs, no other difference). With the network actor
sized to 0.5 CPU on a 2-CPU node, equal to ``read_num_cpus``, every photo's decode and face
location ran inside the one network actor, one photo at a time, while the other CPU idled
(300 photos, 2 cores: 13.8 photos/s steady fused, 17.7 apart; README "Benchmarks"). The
prepare tasks therefore reserve memory (``ray.read_memory_mb``): a real reservation (Ray starts
no more of them on a node than its memory holds; a 24 MP photo's task and its sandbox child
peaked at ~1.1-1.2 GB) which also makes their remote arguments differ from the actors', so Ray
Data keeps the stages apart.
"""

from __future__ import annotations

from typing import Any

from beardnet.infer.stages import NetworkFn, finish_batch, prepare_batch

MB = 1024 * 1024


def build_pipeline(cfg: Any, s3: Any, opts: Any, blocks: list[Any], net_cpus: float,
                   threads: int, isolate: dict[str, Any] | None = None, guard: Any = None):
    """The job's Ray Data dataset over ``blocks`` (Arrow work tables), up to the manifest
    sink: prepare tasks -> network actor pool -> finish tasks (Ray must be initialised)."""
    import ray.data
    from ray.data import ActorPoolStrategy

    r = cfg.ray
    ds = ray.data.from_arrow(blocks)
    ds = ds.map_batches(
        prepare_batch,
        fn_kwargs={
            "input_uri": cfg.job.input, "opts": opts, "on_no_face": cfg.job.on_no_face,
            "s3": s3, "isolate": isolate,
        },
        batch_format="pyarrow",
        batch_size=r.read_batch_size,
        num_cpus=r.read_num_cpus,
        memory=r.read_memory_mb * MB,  # also keeps the stage out of the actors (docstring)
        resources=r.task_resources or None,
        udf_modifying_row_count=False,
    )
    ds = ds.map_batches(
        NetworkFn,
        fn_constructor_kwargs={
            "model_uri": cfg.job.model, "s3": s3, "threads": threads,
            "batch_size": r.network_batch_size,
        },
        batch_format="pyarrow",
        batch_size=r.network_batch_size,
        num_cpus=net_cpus,
        resources=r.network_resources or None,
        compute=ActorPoolStrategy(size=r.network_actors),
        udf_modifying_row_count=False,
    )
    return ds.map_batches(
        finish_batch,
        fn_kwargs={"output_uri": cfg.job.output, "opts": opts, "s3": s3, "isolate": isolate,
                   "guard": guard},
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=r.write_num_cpus,
        resources=r.task_resources or None,
        udf_modifying_row_count=False,
    )


def check_memory(cluster: dict[str, float], r: Any) -> str | None:
    """Why no node could run a prepare task (its ``read_memory_mb`` over the largest node's
    memory resource), or None. ``cluster``: node resource dicts' ``memory`` values (bytes)."""
    need = r.read_memory_mb * MB
    largest = max(cluster.values(), default=0.0)
    if largest + 1e-9 < need:
        return (f"ray.read_memory_mb: {r.read_memory_mb} MB per read/locate task, but the "
                f"largest node offers {largest / MB:.0f} MB of Ray memory: the tasks would "
                "never start")
    return None
