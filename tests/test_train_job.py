"""The training job: config validation, LR schedule, the shuffle baseline sampler, acquisition
inside the job, and (slow) a finished run continued by pointing at it. The 2-worker run on S3
with a checkpoint, a worker killed mid-run and resumed from the checkpoint runs on two Ray nodes
in test_multinode.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from beardnet.config import ConfigError, load_config
from beardnet.data.sampler import ShuffleBatchSampler
from beardnet.train.config import TrainConfig
from beardnet.train.loop import lr_factor

STYLES = ("none", "stubble", "mustache", "goatee", "full_beard")


def render_crops(root: str, ids: int, size: int = 64, s3=None) -> str:
    """A small paired crop set (synth layout) written to a local folder or an s3:// prefix;
    identity i is in split train, except every 5th (val)."""
    import cv2
    import pyarrow as pa

    from beardnet import storage
    from beardnet.manifest import write_manifest
    from beardnet.synth.render import render_identity

    rows = []
    for i in range(ids):
        for cat, c in render_identity(2000 + i, size).items():
            img = cv2.imencode(".png", c.image[:, :, ::-1])[1].tobytes()
            beard = cv2.imencode(".png", c.beard_mask.astype(np.uint8) * 255)[1].tobytes()
            face = cv2.imencode(".png", c.face_mask.astype(np.uint8) * 255)[1].tobytes()
            storage.write_bytes(storage.join(root, f"images/{i}/{cat}.png"), img, s3=s3)
            storage.write_bytes(storage.join(root, f"masks/{i}/{cat}_beard.png"), beard, s3=s3)
            storage.write_bytes(storage.join(root, f"masks/{i}/{cat}_face.png"), face, s3=s3)
            rows.append(
                {
                    "uri": f"images/{i}/{cat}.png",
                    "identity": f"id{i}",
                    "category": cat,
                    "beard_mask_uri": f"masks/{i}/{cat}_beard.png",
                    "face_mask_uri": f"masks/{i}/{cat}_face.png",
                    "face_box": None,
                    "split": "val" if i % 5 == 4 else "train",
                }
            )
    write_manifest(pa.Table.from_pylist(rows), storage.join(root, "manifest.parquet"), s3=s3)
    return root


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> str:
    return render_crops(str(tmp_path_factory.mktemp("crops")), 5)


# --------------------------------------------------------------------------- config


def test_config_defaults_and_counts() -> None:
    cfg = TrainConfig()
    assert cfg.batch_counts() == dict.fromkeys(STYLES, 2)
    assert cfg.batch_size() == 10
    cfg = load_config(
        TrainConfig,
        None,
        [
            "train.per_batch=none:2,stubble:2,mustache:1,goatee:1,full_beard:2",
            "train.batch_size=16",
            "train.num_batches=10",
            "train.epochs=3",
            "scaling.num_workers=2",
        ],
    )
    assert cfg.batch_counts() == {
        "none": 4,
        "stubble": 4,
        "mustache": 2,
        "goatee": 2,
        "full_beard": 4,
    }
    assert cfg.train.total_steps(2) == 15  # 3 epochs of 10 global batches over 2 ranks
    assert cfg.train.steps_per_epoch(2) == 5
    assert cfg.run_uri().endswith("/beardnet-runs/beardnet-train")


@pytest.mark.parametrize(
    "sets, where",
    [
        (["train.per_batch=none:1,stubble:2", "train.batch_size=4"], "train.per_batch"),
        (["train.per_batch=none:1,beardy:2"], "beardy"),
        (["train.lr=-1"], "train.lr"),
        (["train.colour=red"], "train.colour"),
        (["loss.area_weightin=false"], "area_weightin"),
        (["loss.w_max=0.5"], "w_max"),
        (["train.fail_at_step=99", "train.max_steps=5"], "fail_at_step"),
        (["data.ratio=none:-1"], "data.ratio"),
        (["scaling.num_workers=0"], "scaling.num_workers"),
    ],
)
def test_config_errors_name_the_field(sets, where) -> None:
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(TrainConfig, None, sets)


def test_shipped_configs_load() -> None:
    root = Path(__file__).resolve().parent.parent / "jobs" / "configs"
    for name in ("train_quality.toml", "train_demo.toml"):
        cfg = load_config(TrainConfig, str(root / name), [])
        assert cfg.batch_size() in (10, 20)
    q = load_config(TrainConfig, str(root / "train_quality.toml"), [])
    assert q.loss["area_weighting"] is True and q.train.max_steps and q.data.ratio


def test_lr_schedule() -> None:
    assert lr_factor(0, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, "cosine", 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(55, 100, 10, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(80, 100, 10, "constant", 0.0) == 1.0


# --------------------------------------------------------------------------- samplers


def test_shuffle_sampler_ranks_disjoint_and_resumable() -> None:
    a = ShuffleBatchSampler(40, 5, 8, rank=0, world_size=2, seed=3)
    b = ShuffleBatchSampler(40, 5, 8, rank=1, world_size=2, seed=3)
    ba, bb = list(a), list(b)
    assert len(ba) == len(bb) == 4 and all(len(x) == 5 for x in ba + bb)
    flat = [i for x in ba + bb for i in x]
    assert len(set(flat)) == 40  # one full permutation over both ranks
    assert ba == list(ShuffleBatchSampler(40, 5, 8, rank=0, world_size=2, seed=3))
    a.set_epoch(1)
    assert list(a) != ba
    c = ShuffleBatchSampler(40, 5, 8, rank=0, world_size=2, seed=3)
    it = iter(c)
    next(it)
    state = c.state_dict()
    d = ShuffleBatchSampler(40, 5, 8, rank=0, world_size=2, seed=3)
    d.load_state_dict(state)
    assert list(d) == ba[1:]


def test_training_set_acquisition_and_ratio_batches(crops) -> None:
    """Inside the job: acquisition by category ratio then batches of the sampling ratio."""
    from beardnet.train.data import build_sampler, build_training_set

    cfg = load_config(
        TrainConfig,
        None,
        [
            f"data.uri={crops}",
            "data.size=64",
            "data.ratio=none:2,stubble:1,mustache:1,goatee:1,full_beard:1",
            "train.per_batch=none:2,stubble:1,mustache:1,goatee:1,full_beard:1",
            "train.num_batches=4",
            "train.shuffle=false",
        ],
    )
    ds, report = build_training_set(cfg, cfg.s3.settings())
    assert report["source_rows"] == 20  # 4 train identities x 5
    # the ratio 2:1:1:1:1 with 4 rows per category: none caps at 4 -> total 12
    assert report["counts"] == {
        "none": 4,
        "stubble": 2,
        "mustache": 2,
        "goatee": 2,
        "full_beard": 2,
    }
    sampler = build_sampler(cfg, ds, 0, 1)
    cats = ds.categories_array()
    for b in sampler:
        assert np.bincount(cats[b], minlength=5).tolist() == [2, 1, 1, 1, 1]
    shuffled = load_config(TrainConfig, None, [f"data.uri={crops}", "train.shuffle=true"])
    assert isinstance(build_sampler(shuffled, ds, 0, 1), ShuffleBatchSampler)


# --------------------------------------------------------------------------- Ray Train


def train_sets(data: str, storage_uri: str, name: str, sets: list[str]) -> list[str]:
    """``--set`` overrides of a tiny 2-worker run (64 px, base 8, 8 batches) plus ``sets``."""
    return [
        f"data.uri={data}",
        "data.size=64",
        "data.val_samples=10",
        "train.per_batch=none:1,stubble:1,mustache:1,goatee:1,full_beard:1",
        "train.num_batches=8",
        "train.epochs=1",
        "train.warmup_steps=1",
        "train.checkpoint_every=2",
        "model.base=8",
        f"run.storage={storage_uri}",
        f"run.name={name}",
        "run.progress=off",
        "scaling.num_workers=2",
        "scaling.max_failures=1",
        *sets,
    ]


def _cfg(data: str, storage_uri: str, name: str, sets: list[str]) -> TrainConfig:
    return load_config(TrainConfig, None, train_sets(data, storage_uri, name, sets))


@pytest.mark.slow
def test_continue_a_finished_run_by_pointing_at_it(ray_session, crops, tmp_path) -> None:
    """A 1-worker run finishes at step 2; a new run with resume_from=<that run> and a larger
    budget starts at step 2, not 0."""
    from beardnet.train.job import run_training

    first = _cfg(crops, str(tmp_path / "runs"), "a", ["scaling.num_workers=1", "train.max_steps=2"])
    r1 = run_training(first, progress=False)
    assert r1.ok, r1.error
    assert r1.metrics["step"] == 2 and r1.metrics["start_step"] == 0
    second = _cfg(
        crops,
        str(tmp_path / "runs"),
        "b",
        [
            "scaling.num_workers=1",
            "train.max_steps=3",
            f"train.resume_from={r1.run_uri}",
        ],
    )
    r2 = run_training(second, progress=False)
    assert r2.ok, r2.error
    assert r2.metrics["start_step"] == 2 and r2.metrics["step"] == 3
    assert os.path.exists(os.path.join(r2.model_uri, "model.safetensors"))


def test_demo_config() -> None:
    """The demo hook's config: 2 workers, checkpoints under the given run URI."""
    from beardnet.train.job import demo_config

    cfg = demo_config("s3://demo/crops", "s3://demo/runs/demo-1", steps=40)
    assert cfg.scaling.num_workers == 2
    assert cfg.run.storage == "s3://demo/runs" and cfg.run.name == "demo-1"
    assert cfg.run_uri() == "s3://demo/runs/demo-1"
    assert cfg.train.total_steps(2) == 40 and cfg.train.checkpoint_every == 20
    local = demo_config("/tmp/x/crops", "/tmp/x/runs/d")
    assert local.run_uri() == "/tmp/x/runs/d"


def test_init_from_must_fit_the_network() -> None:
    """``train.init_from`` starts from a model's weights; a model that does not fit the
    configured network fails before Ray starts, naming the field."""
    from beardnet.train.job import check_init

    ok = load_config(TrainConfig, None, ["model.base=24", "train.init_from=default"])
    check_init(ok, None)
    bad = load_config(TrainConfig, None, ["model.base=16", "train.init_from=default"])
    with pytest.raises(ValueError, match="train.init_from: .* does not fit"):
        check_init(bad, None)
    with pytest.raises(ValueError, match="train.init_from: no model.json"):
        check_init(load_config(TrainConfig, None, ["train.init_from=/nonexistent"]), None)


def test_relative_paths_made_absolute_for_the_workers(tmp_path, monkeypatch) -> None:
    """Ray Train workers run in their own folders: local relative paths are resolved in the
    driver; URIs and ``default`` stay as they are."""
    from beardnet.train.job import absolute_paths

    monkeypatch.chdir(tmp_path)
    cfg = load_config(TrainConfig, None, [
        "data.uri=data/crops", 'data.extra_uris=["s3://b/comp", "more"]',
        "train.init_from=default", "train.resume_from=runs/x",
    ])
    out = absolute_paths(cfg)
    assert out.data.uri == str(tmp_path / "data" / "crops")
    assert out.data.extra_uris == ["s3://b/comp", str(tmp_path / "more")]
    assert out.train.init_from == "default" and out.train.resume_from == str(tmp_path / "runs/x")
    assert cfg.data.uri == "data/crops"  # the caller's config is untouched
