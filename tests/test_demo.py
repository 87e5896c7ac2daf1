"""The demo: its step machinery, and the synthetic step end to end on a local S3 server."""

from __future__ import annotations

import argparse

import pytest

from beardnet import storage
from beardnet.demo import DemoContext, add_arguments, run
from beardnet.s3server import LocalS3


def _args(tmp_path, **kw) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(tmp_path / "s3"), "--identities", "3",
                              "--size", "64"])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


def test_steps_run_in_order_and_results_persist(tmp_path, capsys):
    seen = []

    def step_one(ctx: DemoContext) -> None:
        """Write a marker."""
        seen.append("one")
        storage.write_bytes(ctx.uri("marker.txt"), b"hello")  # through the env settings
        ctx.results["one"] = ctx.uri("marker.txt")

    def step_two(ctx: DemoContext) -> None:
        """Read it back."""
        seen.append("two")
        ctx.results["two"] = storage.read_bytes(ctx.results["one"], s3=ctx.s3).decode()

    assert run(_args(tmp_path), steps=[step_one, step_two]) == 0
    out = capsys.readouterr().out
    assert seen == ["one", "two"]
    assert "== one: Write a marker." in out and '"two": "hello"' in out
    assert "s3://beardnet-demo" in out and str(tmp_path / "s3") in out
    # the server is gone, the data stays: serve it again and find the marker
    with LocalS3(tmp_path / "s3") as server:
        assert storage.read_bytes("s3://beardnet-demo/marker.txt", s3=server.settings) == b"hello"


@pytest.mark.slow
def test_demo_synth_step_end_to_end(tmp_path, capsys):
    pytest.importorskip("beardnet.synth.dataset")
    from beardnet.demo import step_synth_crops
    from beardnet.manifest import read_manifest

    assert run(_args(tmp_path), steps=[step_synth_crops]) == 0
    out = capsys.readouterr().out
    assert "s3://beardnet-demo/crops/manifest.parquet" in out
    with LocalS3(tmp_path / "s3") as server:
        t = read_manifest("s3://beardnet-demo/crops/manifest.parquet", check_uris=True,
                          s3=server.settings)
        assert t.num_rows == 3 * 5
        assert set(t.column("category").to_pylist()) == {
            "none", "stubble", "mustache", "goatee", "full_beard"}
