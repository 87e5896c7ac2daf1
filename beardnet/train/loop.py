"""The per-worker training loop run by Ray Train (``train_loop_per_worker``).

Each worker:

1. builds its data path (:mod:`beardnet.train.data`): category-ratio acquisition (claim 2a),
   the paired dataset, this rank's **ratio sampler** batches (claim 2b), a DataLoader whose
   indices carry their epoch;
2. trains :class:`beardnet.model.BeardNet` (DDP: gloo on CPU, nccl + autocast on GPU) with the
   **area-weighted loss** (claim 2c, :func:`beardnet.train.step.compute_losses`), AdamW and a
   **step-based** schedule (linear warm-up, then cosine/linear decay over ``total_steps``), so
   a run is a function of its config and seed; ``train.max_minutes`` is only a safety stop;
3. every ``train.checkpoint_every`` steps, at each epoch end and at the end, rank 0 reports a
   checkpoint (:mod:`beardnet.train.checkpoint`); a restart (worker failure, or the same run
   started again) resumes from the latest one at the identical next batch;
4. at each epoch end rank 0 scores the EMA model on validation pairs and reports the figures;
5. at the end rank 0 exports the EMA weights as a model artifact under ``RUN/model/``.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

from beardnet.train.checkpoint import CHECKPOINT_FILE  # noqa: F401  (public name kept)


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based) of ``total``: linear warm-up over ``warmup`` steps,
    then constant/cosine/linear decay to ``min_ratio`` at the last step."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return min_ratio + (1 - min_ratio) * (1 - t)


def validate_model(net: Any, ds: Any, n: int, cats: Any, classifier: Any = None) -> dict[str, Any]:
    """Per-style figures of ``net`` on ``n`` evenly spread validation pairs (epoch 0 pairs)."""
    import torch

    from beardnet.evaluate.metrics import StyleMetrics
    from beardnet.train.data import collate

    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int))
    sm = StyleMetrics(cats.names, margin=2)
    with torch.inference_mode():
        for i in range(0, len(idx), 32):
            b = collate([ds[(0, int(j))] for j in idx[i : i + 32]])
            keep = b["src_style"] != b["style"]
            if not bool(keep.any()):
                continue
            b = {k: v[keep] for k, v in b.items()}
            dev = next(net.parameters()).device
            out, _ = net(b["src"].to(dev), b["style"].to(dev))
            out = out.float().clamp(0, 1).cpu()
            pred = None if classifier is None else classifier.predict(out)
            sm.add(b["style"].numpy(), out, b["tgt"], b["beard_src"], b["beard_tgt"], pred)
    return sm.result()


def _flatten(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(key + "/", v))
        elif v is not None:
            out[key] = v
    return out


def _say(*parts: object) -> None:
    """One line to stdout. Ray Train patches ``print`` to log *and* echo (every line twice in
    the driver's output); writing to the stream directly shows it once."""
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


class _Progress:
    """Progress lines from rank 0: every ``every`` steps in a terminal, per epoch otherwise."""

    def __init__(self, enabled: bool, every: int, total: int) -> None:
        self.enabled, self.every, self.total = enabled, every, total

    def step(self, step: int, logs: dict[str, float], sps: float, batch: int) -> None:
        if self.enabled and (step % self.every == 0 or step == self.total):
            eta = (self.total - step) * batch / max(sps, 1e-9)
            _say(
                f"[train] step {step}/{self.total}, eta {eta / 60:.1f} min: "
                f"loss {logs.get('loss', 0):.4f} beard_l1 {logs.get('beard_l1', 0):.4f} "
                f"{sps:.1f} samples/s",
            )

    def epoch(self, epoch: int, step: int, metrics: dict[str, Any]) -> None:
        keys = [k for k in metrics if k.startswith("val/") and k.endswith("beard_psnr")]
        vals = " ".join(f"{k.split('/')[1]}={metrics[k]:.1f}" for k in keys)
        _say(
            f"[train] epoch {epoch} done at step {step}: loss {metrics.get('loss', 0):.4f} "
            f"{metrics.get('samples_per_s', 0):.1f} samples/s; val beard PSNR {vals}",
        )


def _maybe_fail(cfg: Any, rank: int, world: int, step: int, s3: Any = None) -> None:
    """TEST ONLY (``train.fail_at_step``): rank 1 (or 0 alone) dies once, after Ray Train's
    controller has collected the last checkpoint, as a real crash mid-step would. The marker
    that makes it one-off (``train.fail_marker``) is a local file or an ``s3://`` object (the
    one to use when workers run on other nodes)."""
    from beardnet import storage

    if cfg.train.fail_at_step is None or rank != (1 if world > 1 else 0):
        return
    if step + 1 != cfg.train.fail_at_step:
        return
    marker = cfg.train.fail_marker or os.path.join(
        tempfile.gettempdir(), f"beardnet-fail-{cfg.run.name}"
    )
    if storage.exists(marker, s3=s3):
        return
    storage.write_bytes(marker, b"", s3=s3)
    time.sleep(5)  # the controller polls every rank's report every 2 s
    _say(f"[train] TEST: rank {rank} exits at step {step + 1}")
    os._exit(1)


def _stop_flag(done: bool, world: int) -> bool:
    """Rank 0's decision, the same on every rank."""
    import torch

    flag = torch.tensor([1.0 if done else 0.0])
    if world > 1:
        import torch.distributed as dist

        dist.broadcast(flag, src=0)
    return bool(flag.item())


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config = {"cfg": TrainConfig, "run_uri": str,
    "progress": bool, "s3": S3Settings}``."""
    import ray.train
    import ray.train.torch
    import torch

    from beardnet.model import BeardNet, save_artifact
    from beardnet.train.checkpoint import StagedCheckpoint, checkpoint_from_uri, load_state
    from beardnet.train.config import TrainConfig
    from beardnet.train.data import (
        build_sampler,
        build_training_set,
        make_loader,
        record_batch,
        val_pairs,
    )
    from beardnet.train.step import LossConfig, ModelEMA, compute_losses

    cfg = config["cfg"]
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.model_validate(cfg)
    s3 = config.get("s3") or cfg.s3.settings()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.cpus_per_worker)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    device = ray.train.torch.get_device()
    use_amp = device.type == "cuda"

    ds, acq_report = build_training_set(cfg, s3)
    sampler = build_sampler(cfg, ds, rank, world)
    loader = ray.train.torch.prepare_data_loader(
        make_loader(cfg, ds, sampler), add_dist_sampler=False
    )

    net = BeardNet(categories=len(cfg.data.cats), size=cfg.data.size, **cfg.model)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    total = cfg.train.total_steps(world)
    budget_s = cfg.train.max_minutes * 60.0 if cfg.train.max_minutes else None
    ema = ModelEMA(net, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    loss_cfg = LossConfig.model_validate(cfg.loss)

    step, epoch, start_step, elapsed = 0, 0, 0, 0.0
    ckpt = ray.train.get_checkpoint()
    source = "restart"
    if ckpt is None and cfg.train.resume_from:
        ckpt = checkpoint_from_uri(cfg.train.resume_from, s3)
        source = "resume_from"
    if ckpt is None and cfg.train.init_from:
        from beardnet.model import load

        init = load(None if cfg.train.init_from == "default" else cfg.train.init_from, s3=s3)
        net.load_state_dict(init.net.state_dict())
        if rank == 0:
            _say(f"[train] weights from {cfg.train.init_from} (model {init.model_id})")
    if ckpt is not None:
        st = load_state(ckpt)
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        elapsed = float(st.get("elapsed", 0.0))
        if ema is not None and st.get("ema") is not None:
            ema.load_state_dict(st["ema"])
        step = start_step = int(st["step"])
        try:
            sampler.load_state_dict(st["sampler"])
            epoch = int(st["sampler"]["epoch"])
        except (ValueError, KeyError) as e:  # e.g. another world size: restart that epoch
            epoch = int(st["sampler"].get("epoch", st.get("epoch", 0)))
            if rank == 0:
                _say(f"[train] sampler state not reusable ({e}); epoch {epoch} starts over")
        if rank == 0:
            _say(f"[train] resumed at step {step} (epoch {epoch}) from {source}: {ckpt.path}")

    model = ray.train.torch.prepare_model(net)
    base = net
    classifier = None
    vds = None
    if rank == 0:
        vds = val_pairs(cfg, s3)
        try:
            from beardnet.evaluate.classifier import load_classifier

            classifier = load_classifier()
        except (FileNotFoundError, ImportError):
            classifier = None
    progress = _Progress(bool(config.get("progress")) and rank == 0, cfg.train.log_every, total)
    bs = cfg.batch_size()
    last_metrics: dict[str, Any] = {}

    def stop_now() -> bool:
        done = step >= total or (budget_s is not None and elapsed >= budget_s)
        return _stop_flag(done, world) if budget_s is not None else done

    t_last = time.time()
    finished = stop_now()
    while not finished:
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        in_epoch = sampler.batches_done
        sums: dict[str, float] = {}
        n_steps = 0
        t_epoch = time.time()
        model.train()
        for batch in loader:
            _maybe_fail(cfg, rank, world, step, s3)
            if cfg.train.record_batches:
                record_batch(cfg.train.record_batches, rank, step + 1, batch, s3)
            lr_now = cfg.train.lr * lr_factor(
                step, total, cfg.train.warmup_steps, cfg.train.schedule, cfg.train.min_lr_ratio
            )
            for g in opt.param_groups:
                g["lr"] = lr_now
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = compute_losses(model, batch, loss_cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(base)
            step += 1
            in_epoch += 1
            n_steps += 1
            now = time.time()
            elapsed += now - t_last
            t_last = now
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            sps = n_steps * bs * world / max(1e-9, time.time() - t_epoch)
            progress.step(step, logs, sps, bs * world)
            epoch_end = in_epoch >= len(sampler)
            last = stop_now()
            do_ckpt = step % cfg.train.checkpoint_every == 0 or last or epoch_end
            if not (epoch_end or last or do_ckpt):
                continue
            metrics: dict[str, Any] = {
                "step": step,
                "epoch": epoch,
                "start_step": start_step,
                "lr": lr_now,
                "samples_per_s": sps,
                "elapsed_s": round(elapsed, 1),
                "samples": step * bs * world,
                "world_size": world,
                "batch_size": bs,
                **{k: v / n_steps for k, v in sums.items()},
            }
            if (epoch_end or last) and rank == 0 and vds is not None:
                evnet = ema.module if ema is not None else base
                per_style = validate_model(
                    evnet, vds, cfg.data.val_samples, cfg.data.cats, classifier
                )
                metrics.update(_flatten("val/", per_style))
                progress.epoch(epoch, step, metrics)
            state = None
            if rank == 0:
                sd = sampler.state_dict(batches_done=in_epoch)
                if epoch_end:
                    sd["epoch"], sd["batches_done"] = epoch + 1, 0
                state = {
                    "model": base.state_dict(),
                    "optimizer": opt.state_dict(),
                    "elapsed": elapsed,
                    "ema": ema.state_dict() if ema is not None else None,
                    "sampler": sd,
                    "step": step,
                    "epoch": epoch,
                }
            with StagedCheckpoint(state) as checkpoint:
                ray.train.report(
                    metrics, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint_{step:08d}"
                )
            t_last = time.time()  # reporting/validation time is not training time
            last_metrics = metrics
            if last:
                finished = True
            if last or epoch_end:
                break
        if in_epoch >= len(sampler):
            epoch += 1

    if rank == 0:
        evnet = ema.module if ema is not None else base
        meta = {
            "categories": list(cfg.data.cats.names),
            "input_size": cfg.data.size,
            "training": {
                "config": cfg.model_dump(mode="json", exclude={"s3"}),
                "steps": step,
                "samples": step * bs * world,
                "world_size": world,
                "acquisition": acq_report,
                "weights": "ema" if ema is not None else "raw",
            },
            "metrics": {k: v for k, v in last_metrics.items() if isinstance(v, (int, float))},
        }
        save_artifact(evnet, config["run_uri"].rstrip("/") + "/model", meta, s3=s3)
        _say(f"[train] model artifact: {config['run_uri'].rstrip('/')}/model")
