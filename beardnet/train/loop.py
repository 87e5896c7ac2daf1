"""The per-worker training loop run by Ray Train (``train_loop_per_worker``).

Each worker:

1. reads the training manifest, acquires the training rows by the **category ratio**
   (claim 2a; every rank computes the same selection from the seed) and builds the paired
   dataset (:class:`beardnet.data.paired.PairedCropDataset`);
2. draws batches with the **ratio sampler** (claim 2b) for its own rank and world size, so every
   batch on every rank has the configured composition and ranks get disjoint batches
   (``train.shuffle=true`` swaps in plain shuffled batches: the ablation's baseline);
3. trains :class:`beardnet.model.BeardNet` (DDP: gloo on CPU, nccl + autocast on GPU) with the
   **area-weighted loss** (claim 2c, :func:`beardnet.train.step.compute_losses`), AdamW, warm-up
   + cosine/linear schedule, gradient clipping and an EMA of the weights;
4. every ``train.checkpoint_every`` steps (and at the end) rank 0 reports a checkpoint
   (``state.pt``: model, optimiser, scheduler, EMA, sampler state, step; loaded with
   ``weights_only=True``) that Ray Train persists to the run folder. On a restart (worker
   failure, or the same run started again) the loop resumes from the latest checkpoint;
   ``train.resume_from`` points at another run's checkpoint or run folder;
5. at each epoch end rank 0 scores the EMA model on validation pairs (per-style beard PSNR,
   outside PSNR, style accuracy when the style classifier is available) and reports them;
6. at the end rank 0 exports the EMA weights as a model artifact under ``RUN/model/``.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

CHECKPOINT_FILE = "state.pt"


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based) of ``total``: linear warm-up over ``warmup`` steps,
    then constant/cosine/linear decay to ``min_ratio``."""
    frac = max(0.0, (step - warmup) / max(1, total - warmup))
    return lr_factor_frac(step, frac, warmup, schedule, min_ratio)


def lr_factor_frac(step: int, frac: float, warmup: int, schedule: str, min_ratio: float) -> float:
    """LR multiplier: warm-up by steps, then the decay at ``frac`` (0..1) of the budget (steps
    or wall time)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(1.0, max(0.0, frac))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    return min_ratio + (1 - min_ratio) * (1 - t)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def build_training_set(cfg: Any, s3: Any) -> tuple[Any, dict[str, Any]]:
    """The paired training dataset after category-ratio acquisition, plus an acquisition
    report (same on every rank: a pure function of the config)."""
    from beardnet.data.acquire import acquire
    from beardnet.data.paired import PairedCropDataset, manifest_path
    from beardnet.manifest import read_manifest

    cats = cfg.data.cats
    muri = manifest_path(cfg.data.uri)
    table = read_manifest(muri, cats, s3=s3)
    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False)) == cfg.data.train_split
    table = table.filter(split)
    if table.num_rows == 0:
        raise ValueError(f"{muri}: no rows in split {cfg.data.train_split!r}")
    all_cats = cats.indices(table.column("category").to_pylist()).astype(np.int64)
    report: dict[str, Any] = {
        "source_rows": int(table.num_rows),
        "source_counts": {n: int((all_cats == i).sum()) for i, n in enumerate(cats.names)},
    }
    rows = None
    ratio = cfg.data.ratio_dict()
    if ratio is not None:
        rows, rep = acquire(
            all_cats, ratio, cfg.data.total, cfg.train.seed, cfg.data.allow_oversample, cats
        )
        report["acquired"] = rep.to_dict()
    elif cfg.data.total is not None:
        rng = np.random.default_rng([cfg.train.seed, 0xACC])
        rows = np.sort(
            rng.choice(table.num_rows, min(cfg.data.total, table.num_rows), replace=False)
        )
    ds = PairedCropDataset(
        table,
        cats,
        split=None,
        size=cfg.data.size,
        augment=cfg.data.augment,
        s3=s3,
        manifest_uri=muri,
        rows=rows,
        seed=cfg.train.seed,
        cache_items=cfg.data.cache_items,
    )
    report["rows"] = len(ds)
    report["counts"] = {
        n: int((ds.categories_array() == i).sum()) for i, n in enumerate(cats.names)
    }
    return ds, report


def build_sampler(cfg: Any, ds: Any, rank: int, world: int) -> Any:
    """Ratio sampler (default) or plain shuffled batches (``train.shuffle``)."""
    from beardnet.data.sampler import RatioBatchSampler, ShuffleBatchSampler

    if cfg.train.shuffle:
        return ShuffleBatchSampler(
            len(ds),
            cfg.batch_size(),
            cfg.train.num_batches,
            rank=rank,
            world_size=world,
            seed=cfg.train.seed,
        )
    return RatioBatchSampler(
        ds.categories_array(),
        cfg.batch_counts(),
        cfg.train.num_batches,
        rank=rank,
        world_size=world,
        seed=cfg.train.seed,
        names=cfg.data.cats,
    )


def val_pairs(cfg: Any, s3: Any) -> Any:
    """The validation dataset (no augmentation), or None when there is none."""
    from beardnet.data.paired import PairedCropDataset

    if cfg.data.val_samples <= 0:
        return None
    try:
        return PairedCropDataset(
            cfg.data.uri,
            cfg.data.cats,
            split=cfg.data.val_split,
            size=cfg.data.size,
            augment=False,
            s3=s3,
            seed=cfg.train.seed + 1,
        )
    except ValueError:
        return None


def validate_model(net: Any, ds: Any, n: int, cats: Any, classifier: Any = None) -> dict[str, Any]:
    """Per-style figures of ``net`` on ``n`` evenly spread validation pairs (epoch 0 pairs)."""
    import torch

    from beardnet.evaluate.metrics import StyleMetrics

    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int))
    sm = StyleMetrics(cats.names, margin=2)
    ds.set_epoch(0)
    with torch.inference_mode():
        for i in range(0, len(idx), 32):
            b = _collate([ds[int(j)] for j in idx[i : i + 32]])
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


def _load_state(ckpt: Any) -> dict[str, Any]:
    import torch

    with ckpt.as_directory() as d:
        return torch.load(os.path.join(d, CHECKPOINT_FILE), map_location="cpu", weights_only=True)


def _checkpoint_from_uri(uri: str, s3: Any) -> Any:
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


def _say(*parts: object) -> None:
    """One line to stdout. Ray Train patches ``print`` to log *and* echo (every line twice in
    the driver's output); writing to the stream directly shows it once."""
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


class _Progress:
    """Progress lines from rank 0: every ``every`` steps in a terminal, per epoch otherwise."""

    def __init__(self, enabled: bool, every: int, total: int, budget_s: float | None) -> None:
        self.enabled, self.every, self.total, self.budget_s = enabled, every, total, budget_s
        self.t0 = time.time()

    def step(
        self, step: int, logs: dict[str, float], sps: float, elapsed: float, batch: int
    ) -> None:
        if self.enabled and (step % self.every == 0 or step == self.total):
            if self.budget_s:
                where = f"step {step}, {elapsed / 60:.1f}/{self.budget_s / 60:.0f} min"
            else:
                eta = (self.total - step) * batch / max(sps, 1e-9)
                where = f"step {step}/{self.total}, eta {eta / 60:.1f} min"
            _say(
                f"[train] {where}: loss {logs.get('loss', 0):.4f} "
                f"beard_l1 {logs.get('beard_l1', 0):.4f} {sps:.1f} samples/s",
            )

    def epoch(self, epoch: int, step: int, metrics: dict[str, Any]) -> None:
        keys = [k for k in metrics if k.startswith("val/") and k.endswith("beard_psnr")]
        vals = " ".join(f"{k.split('/')[1]}={metrics[k]:.1f}" for k in keys)
        _say(
            f"[train] epoch {epoch} done at step {step}: loss {metrics.get('loss', 0):.4f} "
            f"{metrics.get('samples_per_s', 0):.1f} samples/s; val beard PSNR {vals}",
        )


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config = {"cfg": TrainConfig, "run_uri": str,
    "progress": bool, "s3": S3Settings}``."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.utils.data import DataLoader

    from beardnet.model import BeardNet, save_artifact
    from beardnet.train.config import TrainConfig
    from beardnet.train.step import LossConfig, ModelEMA, compute_losses

    cfg = config["cfg"]
    if not isinstance(cfg, TrainConfig):
        cfg = TrainConfig.model_validate(cfg)
    s3 = config.get("s3") or cfg.s3.settings()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.cpus_per_worker)
    torch.manual_seed(cfg.train.seed + rank)
    device = ray.train.torch.get_device()
    use_amp = device.type == "cuda"

    ds, acq_report = build_training_set(cfg, s3)
    sampler = build_sampler(cfg, ds, rank, world)
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=cfg.data.loader_workers,
        collate_fn=_collate,
        persistent_workers=cfg.data.loader_workers > 0,
    )
    loader = ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

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
        ckpt = _checkpoint_from_uri(cfg.train.resume_from, s3)
        source = "resume_from"
    if ckpt is not None:
        st = _load_state(ckpt)
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
            _say(
                f"[train] resumed at step {step} (epoch {epoch}) from {source}: {ckpt.path}",
            )

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
    progress = _Progress(
        bool(config.get("progress")) and rank == 0, cfg.train.log_every, total, budget_s
    )
    fail_rank = 1 if world > 1 else 0
    bs = cfg.batch_size()
    last_metrics: dict[str, Any] = {}

    def progress_fraction() -> float:
        f = step / total
        if budget_s:
            f = max(f, elapsed / budget_s) if cfg.train.max_steps else elapsed / budget_s
        return min(1.0, f)

    def stop_now() -> bool:
        """Same answer on every rank (rank 0 decides on a time budget)."""
        done = step >= total if (cfg.train.max_steps or not budget_s) else False
        if budget_s:
            flag = torch.tensor([1.0 if (done or elapsed >= budget_s) else 0.0])
            if world > 1:
                import torch.distributed as dist

                dist.broadcast(flag, src=0)
            done = bool(flag.item())
        return done

    def set_lr() -> float:
        f = lr_factor_frac(
            step,
            progress_fraction(),
            cfg.train.warmup_steps,
            cfg.train.schedule,
            cfg.train.min_lr_ratio,
        )
        for g in opt.param_groups:
            g["lr"] = cfg.train.lr * f
        return cfg.train.lr * f

    t_last = time.time()
    finished = stop_now() if (budget_s or step >= total) else False
    while not finished:
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        in_epoch = sampler.batches_done
        sums: dict[str, float] = {}
        n_steps = 0
        t_epoch = time.time()
        model.train()
        for batch in loader:
            if (
                cfg.train.fail_at_step is not None
                and rank == fail_rank
                and step + 1 == cfg.train.fail_at_step
            ):
                marker = cfg.train.fail_marker or os.path.join(
                    tempfile.gettempdir(), f"beardnet-fail-{cfg.run.name}"
                )
                if not os.path.exists(marker):
                    open(marker, "w").close()
                    # Ray Train's controller collects a checkpoint once it has polled every
                    # rank's report (every 2 s); die after that, as a real crash mid-step would.
                    time.sleep(5)
                    _say(f"[train] TEST: rank {rank} exits at step {step + 1}")
                    sys.stdout.flush()
                    os._exit(1)
            lr_now = set_lr()
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
            progress.step(step, logs, sps, elapsed, bs * world)
            epoch_end = in_epoch >= len(sampler)
            last = stop_now()
            do_ckpt = step % cfg.train.checkpoint_every == 0 or last
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
            checkpoint = None
            tmp = None
            if do_ckpt and rank == 0:
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
                tmp = tempfile.mkdtemp(prefix="beardnet-ckpt-")
                torch.save(state, os.path.join(tmp, CHECKPOINT_FILE))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(
                metrics,
                checkpoint=checkpoint,
                checkpoint_dir_name=f"checkpoint_{step:08d}" if do_ckpt else None,
            )
            if tmp is not None:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
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
