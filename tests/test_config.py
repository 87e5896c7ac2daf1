"""Config loading: files, --set overrides, errors that name the field, S3 env fallback."""

from __future__ import annotations

import argparse

import pytest
from pydantic import Field

from beardnet.config import (
    ConfigError,
    S3Section,
    StrictModel,
    add_config_arguments,
    config_from_args,
    load_config,
    parse_override,
)


class Data(StrictModel):
    uri: str = "s3://b/crops"
    ratio: str = "none:1,stubble:1"
    batch: int = Field(20, gt=0)


class Train(StrictModel):
    epochs: int = 1
    lr: float = 1e-3
    area_weighting: bool = True
    tags: list[str] = Field(default_factory=list)


class Job(StrictModel):
    data: Data = Data()
    train: Train = Train()
    s3: S3Section = S3Section()


def test_defaults_without_file():
    cfg = load_config(Job, None, [])
    assert cfg.data.batch == 20 and cfg.train.lr == 1e-3


def test_toml_file_and_overrides(tmp_path):
    p = tmp_path / "job.toml"
    p.write_text('[data]\nuri = "s3://x/y"\nbatch = 8\n[train]\nepochs = 3\n')
    cfg = load_config(Job, str(p), ["train.lr=0.01", "train.area_weighting=false",
                                    "data.ratio=none:2,goatee:1", "train.tags=[a, b]",
                                    "train.epochs=5"])
    assert cfg.data.uri == "s3://x/y" and cfg.data.batch == 8
    assert cfg.train.epochs == 5 and cfg.train.lr == 0.01
    assert cfg.train.area_weighting is False
    assert cfg.data.ratio == "none:2,goatee:1"
    assert cfg.train.tags == ["a", "b"]


def test_yaml_file(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text("train:\n  epochs: 2\n  lr: 1.0e-4\ns3:\n  endpoint_url: http://127.0.0.1:1\n")
    cfg = load_config(Job, str(p), ["train.lr=1e-5"])
    assert cfg.train.epochs == 2 and cfg.train.lr == pytest.approx(1e-5)
    assert cfg.s3.endpoint_url == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["train.epoch=3"], "train.epoch: Extra inputs are not permitted"),
        (["train.epochs=many"], "train.epochs: Input should be a valid integer"),
        (["data.batch=0"], "data.batch: Input should be greater than 0"),
        (["nosuch.key=1"], "nosuch: Extra inputs are not permitted"),
        (["train.lr.x=1"], "train.lr: Input should be a valid number"),
        (["train.lr=1", "train.lr.x=1"], "train.lr is a value, not a section"),
        (["train.epochs"], "expected section.key=value"),
        (["=3"], "bad key"),
    ],
)
def test_errors_name_the_field(sets, needle):
    with pytest.raises(ConfigError) as ei:
        load_config(Job, None, sets)
    assert needle in str(ei.value)


def test_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = \n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(Job, str(bad), [])
    unknown = tmp_path / "u.yaml"
    unknown.write_text("train:\n  epochz: 1\n")
    with pytest.raises(ConfigError, match=r"u\.yaml: train\.epochz"):
        load_config(Job, str(unknown), [])
    with pytest.raises(ConfigError, match="not found"):
        load_config(Job, str(tmp_path / "missing.toml"), [])
    ini = tmp_path / "x.ini"
    ini.write_text("a=1")
    with pytest.raises(ConfigError, match="unknown config format"):
        load_config(Job, str(ini), [])
    lst = tmp_path / "l.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level"):
        load_config(Job, str(lst), [])


def test_parse_override_scalars():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=") == (["a"], None)
    assert parse_override("a=s3://b/k") == (["a"], "s3://b/k")
    assert parse_override("a=x=y") == (["a"], "x=y")


def test_s3_section_falls_back_to_env_and_refuses_secrets(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    st = load_config(Job, None, ["s3.profile=archive", "s3.sse=aws:kms",
                                 "s3.sse_kms_key_id=key-1"]).s3.settings()
    assert st.endpoint_url == "http://127.0.0.1:7000" and st.region == "eu-central-1"
    assert st.profile == "archive" and st.put_args() == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "key-1"}
    # credentials are the chain's business, not the settings' (nor the config's)
    assert st.access_key_id is None and st.secret_access_key is None
    for name in ("secret_access_key", "access_key_id", "session_token"):
        with pytest.raises(ConfigError) as ei:
            load_config(Job, None, [f"s3.{name}=cfg-secret"])
        assert name in str(ei.value) and "cfg-secret" not in str(ei.value)
    with pytest.raises(ConfigError, match="sse_kms_key_id"):
        load_config(Job, None, ["s3.sse_kms_key_id=k"])
    with pytest.raises(ConfigError, match="s3.sse"):
        load_config(Job, None, ["s3.sse=rot13"])
    with pytest.raises(ConfigError, match="s3.bogus"):
        load_config(Job, None, ["s3.bogus=1"])


def test_argparse_helpers(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = 7\n")
    args = parser.parse_args(["--config", str(p), "--set", "train.lr=0.5", "--set", "data.batch=4"])
    cfg = config_from_args(Job, args)
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.batch) == (7, 0.5, 4)


def test_set_keeps_on_off_words_as_strings_and_booleans_still_parse():
    from pydantic import BaseModel, ConfigDict

    from beardnet.config import load_config

    class Sec(BaseModel):
        model_config = ConfigDict(extra="forbid")
        progress: str = "auto"
        flag: bool = False

    class Cfg(BaseModel):
        model_config = ConfigDict(extra="forbid")
        ray: Sec = Sec()

    cfg = load_config(Cfg, None, ["ray.progress=off", "ray.flag=yes"])
    assert cfg.ray.progress == "off"
    assert cfg.ray.flag is True
