"""Pipeline sizing: network actor CPUs from measured stage shares (beardnet.infer.sizing),
input blocks ramping up to ``block_rows`` (beardnet.infer.plan.block_bounds)."""

from __future__ import annotations

from beardnet.infer import runlog, sizing
from beardnet.infer.plan import block_bounds


def test_network_cpus_follow_the_share_within_bounds() -> None:
    # 2 CPUs, network a quarter of the work: half a CPU, leaving 1.5 for read/write tasks
    assert sizing.network_cpus(2, 0.25, 1, 0.5, 0.5) == 0.5
    # a tiny share still reserves a quarter CPU; rounding is to the nearest quarter
    assert sizing.network_cpus(2, 0.01, 1, 0.5, 0.5) == 0.25
    assert sizing.network_cpus(16, 0.3, 2, 0.5, 0.5) == 2.5
    # a network-bound job never takes the room of one read and one write task
    assert sizing.network_cpus(2, 0.9, 1, 0.5, 0.5) == 1.0
    assert sizing.network_cpus(8, 1.0, 2, 0.5, 0.5) == 3.5


def test_previous_share_is_read_from_the_newest_run_that_counts(tmp_path) -> None:
    out = tmp_path.as_uri()
    assert sizing.previous_network_share(out) is None  # no runs yet

    def run(run_id: str, images: int, share: float | None) -> None:
        summary = {"images": images, "stage_share": {} if share is None else {"network_s": share}}
        runlog.write_summary(out, run_id, summary)

    run("20261201T000000Z-aaaaaa", 500, 0.3)
    assert sizing.previous_network_share(out) == 0.3
    run("20261202T000000Z-bbbbbb", 400, 0.12)
    assert sizing.previous_network_share(out) == 0.12
    # newer runs too small to measure, or without shares, are passed over
    run("20261203T000000Z-cccccc", 3, 0.9)
    run("20261204T000000Z-dddddd", 900, None)
    assert sizing.previous_network_share(out) == 0.12
    # a torn summary is skipped, not fatal
    (tmp_path / "_beardnet" / "runs" / "20261205T000000Z-eeeeee.json").write_text("{")
    assert sizing.previous_network_share(out) == 0.12


def test_blocks_ramp_up_to_block_rows_and_cover_every_row_once() -> None:
    assert [k for _, k in block_bounds(300, 64)] == [8, 16, 32, 64, 64, 64, 52]
    for n, rows in ((0, 64), (1, 64), (5, 8), (7, 4), (1000, 64), (129, 16)):
        bounds = block_bounds(n, rows)
        covered = [i for off, k in bounds for i in range(off, off + k)]
        assert covered == list(range(n)), (n, rows)
        assert all(0 < k <= rows for _, k in bounds)
    assert block_bounds(5, 8) == [(0, 5)]  # one block when the run fits the first


def test_size_network_keeps_a_configured_value_and_sizes_an_unset_one(tmp_path) -> None:
    from beardnet.infer.config import RaySection

    out = tmp_path.as_uri()
    assert sizing.size_network(RaySection(network_num_cpus=1.5), 8, out) == {
        "network_num_cpus": 1.5}
    assert sizing.size_network(RaySection(), 8, out) == {
        "network_share": 0.26, "share_from": "default", "network_num_cpus": 2.0}
    runlog.write_summary(out, "20261201T000000Z-aaaaaa",
                         {"images": 100, "stage_share": {"network_s": 0.1}})
    assert sizing.size_network(RaySection(), 8, out) == {
        "network_share": 0.1, "share_from": "earlier run", "network_num_cpus": 0.75}
