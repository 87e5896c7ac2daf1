"""Training benchmark: samples/s of a plain torch loop vs Ray Train with 1 and 2 workers.

All three run the training job's own data path and step: a crop set rendered by the synthetic
renderer, read by the job's :class:`beardnet.data.paired.PairedCropDataset` (decode, pairing,
augmentation), batched by its ratio sampler (claim 2b) through its DataLoader
(``beardnet.train.data``: ``build_training_set``, ``build_sampler``, ``make_loader``), the same
model (:class:`beardnet.model.BeardNet` with the job's defaults), the same loss
(``beardnet.train.step.compute_losses``), AdamW, gradient clipping and an EMA of the weights.
The CPU budget is the same too: the plain loop and the 1-worker run use ``threads`` torch
threads; each of 2 workers uses ``threads // 2`` (so both runs fill the same cores) and gets its
rank's share of the sampler's batches. Throughput is timed inside the loop after warm-up steps
(data loading included), so Ray's start-up (reported separately) is not in the ratio.
Samples/s of the 2-worker run counts both workers' batches (data parallel, weak scaling).
Rates come from the median step time (the machine is shared; the mean is kept as well), and
the plain loop runs before and after each round's Ray runs (a Ray run is compared with the
mean of the two), so that the host's speed drifting during the bench does not decide a ratio.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any


def bench_config(data_uri: str, seed: int = 0) -> Any:
    """The training job's config for the bench: the crop set at ``data_uri``, the job's default
    sampling ratio and batch, 10 batches per epoch (epochs roll over inside the timed steps)."""
    from beardnet.train.config import TrainConfig

    return TrainConfig.model_validate({"data": {"uri": data_uri},
                                       "train": {"seed": seed, "num_batches": 10}})


def job_batches(cfg: Any, rank: int = 0, world: int = 1, prepare: Any = None) -> Iterator[Any]:
    """Endless batches of the training job's data path for ``rank`` of ``world``: dataset,
    ratio sampler and DataLoader as ``train_loop_per_worker`` builds them, epoch after epoch
    (``prepare``: e.g. ``ray.train.torch.prepare_data_loader`` without a dist sampler)."""
    from beardnet.train.data import build_sampler, build_training_set, make_loader

    ds, _ = build_training_set(cfg, None)
    sampler = build_sampler(cfg, ds, rank, world)
    loader = make_loader(cfg, ds, sampler)
    if prepare is not None:
        loader = prepare(loader)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        yield from loader
        epoch += 1


def render_crops(out_dir: str, identities: int = 24, size: int = 128, seed: int = 0) -> str:
    """A small crop set for the bench (the renderer, in this process); returns its folder."""
    from beardnet.synth.dataset import write_crops_dataset

    write_crops_dataset(out_dir, identities, size, seed, use_ray=False)
    return out_dir


def _default_model_kwargs() -> dict[str, Any]:
    try:
        from beardnet.train.config import TrainConfig

        return dict(TrainConfig().model)
    except Exception:  # noqa: BLE001 - defaults of BeardNet then
        return {}


def _loss_fn():
    """The training job's loss (``beardnet.train.step.compute_losses``), returning the total."""
    from beardnet.train.step import LossConfig, compute_losses

    cfg = LossConfig()

    def loss(net, batch):
        total, _ = compute_losses(net, batch, cfg)
        return total

    return loss


def _run_loop(
    net, batches: Iterator[dict[str, Any]], batch: int, warmup: int, steps: int,
    world: int = 1, max_seconds: float | None = None,
) -> dict[str, float]:
    """Train ``warmup + steps`` steps; returns timings of the steps after the warm-up.

    ``max_seconds`` (single process only: DDP ranks must run the same count) stops the timed
    steps early once that much time has passed, after at least 3 of them."""
    import numpy as np
    import torch

    from beardnet.train.step import ModelEMA

    loss_fn = _loss_fn()
    ema = ModelEMA(net)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    params = [p for p in net.parameters() if p.requires_grad]
    net.train()
    times: list[float] = []
    last = float("nan")
    t_start, cpu_start = time.time(), time.process_time()
    for i in range(warmup + steps):
        if i == warmup:
            t_start, cpu_start = time.time(), time.process_time()
        t_step = time.perf_counter()
        b = next(batches)  # the job's loader: decode, pairing, augmentation, collate
        last = _train_step(net, opt, loss_fn, b, params, ema)
        if i >= warmup:
            times.append(time.perf_counter() - t_step)
            if max_seconds is not None and len(times) >= 3 and sum(times) > max_seconds:
                break
    t_end, cpu_end = time.time(), time.process_time()
    steps = len(times)
    el = float(sum(times))
    med = float(np.median(times))
    return {
        # this process's CPU (all threads) per timed step, and the timed window (epoch s)
        "cpu_s_per_step": (cpu_end - cpu_start) / max(1, steps),
        "t_start": t_start,
        "t_end": t_end,
        "seconds": el,
        "steps": float(steps),
        # median step time: robust to the spikes other users of a shared machine cause
        "samples_per_s": world * batch / med,
        "samples_per_s_mean": world * batch * steps / el,
        "step_s_median": med,
        "last_loss": last,
    }


def _train_step(net, opt, loss_fn, batch, params=None, ema=None) -> float:
    """One optimiser step on ``batch``; gradients clipped to 1.0 over ``params`` and ``ema``
    updated when given. Returns the loss."""
    import torch

    loss = loss_fn(net, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if params is not None:
        torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if ema is not None:
        ema.update(net)
    return float(loss.detach())


def _build_net(model_kwargs: dict[str, Any]):
    from beardnet.model.unet import BeardNet

    return BeardNet(**model_kwargs)


def plain_loop(
    data_uri: str, warmup: int, steps: int, threads: int, seed: int = 0,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Single-process torch loop with ``threads`` threads (restored afterwards); at most
    ``steps`` timed steps, fewer when ``max_seconds`` runs out (a heavily loaded machine)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        net = _build_net(_default_model_kwargs())
        cfg = bench_config(data_uri, seed)
        # no /proc monitor here: its thread would compete for this process's GIL and slow the
        # very loop it measures (3 rounds: 34.3 -> 32.8 samples/s); under Ray Train it runs in
        # the driver, another process than the training
        return _run_loop(net, job_batches(cfg), cfg.batch_size(), warmup, steps,
                         max_seconds=max_seconds)
    finally:
        torch.set_num_threads(old)


#: Poll interval of the CPU monitor around every Ray Train run (the bench's own overhead).
MONITOR_INTERVAL_S = 0.5


def _ray_train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: same loop under DDP; rank 0 reports the timing via a tiny checkpoint."""
    import ray.train
    import ray.train.torch
    import torch

    threads = int(config["threads"])
    torch.set_num_threads(threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(config["seed"])
    net = ray.train.torch.prepare_model(_build_net(config["model_kwargs"]))
    cfg = bench_config(config["data_uri"], config["seed"])

    def prepare(loader: Any) -> Any:
        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    batches = job_batches(cfg, rank, world, prepare)
    r = _run_loop(net, batches, cfg.batch_size(), config["warmup"], config["steps"], world=world)
    r["threads"] = float(torch.get_num_threads())
    r["rank"] = float(rank)
    if rank == 0:
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "bench.json"), "w") as f:
                json.dump(r, f)
            ray.train.report(r, checkpoint=ray.train.Checkpoint.from_directory(d))
    else:
        ray.train.report(r)


def ray_train(
    data_uri: str, num_workers: int, threads: int, warmup: int, steps: int, seed: int = 0,
    storage: str | None = None,
) -> dict[str, Any]:
    """Run the loop on Ray Train with ``num_workers`` workers of ``threads`` CPUs/threads each.

    Ray must already be initialised. Returns rank 0's timing plus ``fit_s`` (the whole
    ``trainer.fit()``, start-up included) and the shares of the cores the workers and every
    other process used during rank 0's timed steps (:meth:`CpuMonitor.shares`).
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    own_tmp = None
    if storage is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="beardnet-bench-train-")
        storage = own_tmp.name
    try:
        trainer = TorchTrainer(
            _ray_train_loop,
            train_loop_config={
                "threads": threads, "warmup": warmup, "steps": steps, "seed": seed,
                "data_uri": data_uri, "model_kwargs": _default_model_kwargs(),
            },
            scaling_config=ScalingConfig(
                num_workers=num_workers, use_gpu=False, resources_per_worker={"CPU": threads}
            ),
            run_config=RunConfig(
                name=f"bench-{num_workers}w-{int(time.time())}", storage_path=storage
            ),
        )
        from beardnet.bench.cpu_by_process import CpuMonitor

        t0 = time.perf_counter()
        with CpuMonitor(MONITOR_INTERVAL_S, keep_history=True) as mon:
            result = trainer.fit()
        fit_s = time.perf_counter() - t0
        if result.error is not None:
            raise RuntimeError(f"Ray Train bench run failed: {result.error}")
        metrics = dict(result.metrics or {})
        if "samples_per_s" not in metrics and result.checkpoint is not None:
            with result.checkpoint.as_directory() as d, open(os.path.join(d, "bench.json")) as f:
                metrics = json.load(f)
        out: dict[str, Any] = {k: float(v) for k, v in metrics.items()
                               if isinstance(v, (int, float))}
        out["fit_s"] = fit_s
        if "t_start" in out:  # who else used the cores during rank 0's timed steps
            out.update(mon.shares(out["t_start"], out["t_end"], num_workers * threads,
                                  "RayTrainWorker"))
        return out
    finally:
        if own_tmp is not None:
            own_tmp.cleanup()


def run(report: Any, quick: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Plain loop, Ray Train x1, Ray Train x2 on the job's data path; record samples/s and the
    two ratios."""
    cores = threads or len(os.sched_getaffinity(0)) or 2
    with tempfile.TemporaryDirectory(prefix="beardnet-bench-crops-") as tmp:
        t0 = time.perf_counter()
        data_uri = render_crops(os.path.join(tmp, "crops"), identities=12 if quick else 24)
        render_s = time.perf_counter() - t0
        return _run_all(report, data_uri, quick, cores, render_s)


def _run_all(report: Any, data_uri: str, quick: bool, cores: int,
             render_s: float) -> dict[str, Any]:
    """Rounds of (plain loop, Ray Train x1, Ray Train x2) and one more plain loop at the end:
    each Ray run is compared with the mean of the plain runs just before and just after it, so
    a host that drifts slower or faster during the bench (this VM's speed wanders by 10-20 %
    over minutes) does not count against whichever runs later. Each ratio is the median over
    rounds (quick: one round)."""
    import statistics

    batch = bench_config(data_uri).batch_size()
    warmup, steps = (3, 12) if quick else (5, 60)
    budget = 15.0 if quick else 30.0  # seconds of timed steps in the first plain run
    rounds = 1 if quick else 3
    w2_threads = max(1, cores // 2)
    out: dict[str, Any] = {"batch": batch, "threads_total": cores, "warmup": warmup,
                           "data": "job data path (rendered crop set, ratio sampler, "
                           f"DataLoader; rendered in {render_s:.0f} s)", "rounds": []}
    plains: list[dict[str, Any]] = []
    runs: list[tuple[dict[str, Any], dict[str, Any], list[float]]] = []
    for i in range(rounds + 1):
        load0 = os.getloadavg()[0]
        plains.append(plain_loop(data_uri, warmup, steps, cores,
                                 max_seconds=budget if i == 0 else None))
        # every later run does the same number of steps as the first plain run managed
        steps = int(plains[0]["steps"])
        if i < rounds:
            ray1 = ray_train(data_uri, 1, cores, warmup, steps)
            ray2 = ray_train(data_uri, 2, w2_threads, warmup, steps)
            runs.append((ray1, ray2, [load0, os.getloadavg()[0]]))
    for i, (ray1, ray2, load) in enumerate(runs):
        before, after = plains[i], plains[i + 1]
        plain = {k: (before[k] + after[k]) / 2 for k in ("samples_per_s", "cpu_s_per_step")}
        plain.update(before=before["samples_per_s"], after=after["samples_per_s"])
        out["rounds"].append({
            "plain": plain, "ray1": ray1, "ray2": ray2, "load": load,
            "train1_vs_plain": ray1["samples_per_s"] / plain["samples_per_s"],
            "train2_vs_train1": ray2["samples_per_s"] / ray1["samples_per_s"],
        })
    out["steps"] = steps
    rs = out["rounds"]

    def med(key: str, sub: str | None = None) -> float:
        return float(statistics.median(r[key][sub] if sub else r[key] for r in rs))

    def each(key: str, sub: str | None = None, fmt: str = "{:.1f}") -> str:
        vals = (r[key].get(sub) if sub else r[key] for r in rs)
        return ", ".join("?" if v is None else fmt.format(v) for v in vals)

    loads = ", ".join(f"{r['load'][0]:.1f}-{r['load'][1]:.1f}" for r in rs)
    report.add("train_plain_sps", med("plain", "samples_per_s"), "samples/s",
               note=f"job data path, batch {batch}, {cores} threads, {steps} timed steps; "
               f"median of {len(rs)} rounds, each the mean of the plain runs before and after "
               f"its Ray runs ({each('plain', 'before')} ... {plains[-1]['samples_per_s']:.1f}); "
               f"load per round {loads}")
    report.add("train_ray1_sps", med("ray1", "samples_per_s"), "samples/s",
               note=f"rounds {each('ray1', 'samples_per_s')}; fit() incl. start-up "
               f"{each('ray1', 'fit_s', '{:.0f}')} s")
    report.add("train_ray2_sps", med("ray2", "samples_per_s"), "samples/s",
               note=f"2 x {w2_threads} thread(s), batch {batch} per worker; rounds "
               f"{each('ray2', 'samples_per_s')}")

    report.add("train1_vs_plain", med("train1_vs_plain"),
               note=f"median of the rounds' ratios ({each('train1_vs_plain', fmt='{:.2f}')}); "
               f"CPU s per timed step of the training process, plain "
               f"{each('plain', 'cpu_s_per_step', '{:.3f}')} / Ray x1 "
               f"{each('ray1', 'cpu_s_per_step', '{:.3f}')}; share of the cores used by "
               f"every other process during Ray x1's timed steps "
               f"{each('ray1', 'others_cpu_share', '{:.1%}')}")
    report.add("train2_vs_train1", med("train2_vs_train1"),
               note=f"median of the rounds' ratios ({each('train2_vs_train1', fmt='{:.2f}')})")
    report.details["train"] = out
    return out
