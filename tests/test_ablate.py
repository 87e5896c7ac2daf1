"""The ablation's data and statistics (no Ray): the skewed source and the arm comparison."""

from __future__ import annotations

import numpy as np
from test_paired import make_crops

from beardnet.train import ablate_stats
from beardnet.train.ablate import skewed_manifest


def test_skewed_source_one_target_per_identity(tmp_path) -> None:
    """Every train identity gets exactly one target row, styles in the skew's exact counts;
    all other rows stay as sources (same identity, other styles)."""
    from beardnet.manifest import read_manifest

    root = make_crops(tmp_path, identities=20, split_of=lambda i: "test" if i >= 18 else "train")
    out = str(tmp_path / "skewed" / "manifest.parquet")
    counts = skewed_manifest(str(root), out, "none:10,stubble:4,mustache:2,goatee:2,full_beard:0",
                             seed=7)
    assert counts == {"none": 10, "stubble": 4, "mustache": 2, "goatee": 2, "full_beard": 0}
    t = read_manifest(out)
    rows = t.to_pylist()
    targets = [r for r in rows if r["target"]]
    assert len(targets) == 18 and len({r["identity"] for r in targets}) == 18
    assert not any(r["target"] for r in rows if r["split"] == "test")
    assert all(r["uri"].startswith(str(tmp_path)) for r in rows)  # absolute: readable anywhere
    again = skewed_manifest(str(root), str(tmp_path / "again.parquet"),
                            "none:10,stubble:4,mustache:2,goatee:2,full_beard:0", seed=7)
    assert again == counts and read_manifest(str(tmp_path / "again.parquet")).equals(t)


def _arm(rng: np.random.Generator, shift: float, seeds: int = 3, n: int = 40) -> dict:
    base = np.linspace(20, 30, n)[:, None] * np.ones((1, 5))
    return {"seeds": [{
        "beard_psnr": base + shift + rng.normal(0, 0.2, (n, 5)),
        "beard_l1": np.full((n, 5), 0.03) + rng.normal(0, 1e-3, (n, 5)),
        "style_acc": np.clip(np.full((n, 5), 0.5) + shift / 10, 0, 1),
    } for _ in range(seeds)]}


def test_paired_comparison_and_table() -> None:
    """A consistent +1 dB gain over identities is found significant, noise is not; the table
    lists small beards first with mean +- std over seeds and each contrast's p."""
    rng = np.random.default_rng(0)
    arms = {"shuffle": _arm(rng, 0.0), "ratio": _arm(rng, 1.0), "ratio_area": _arm(rng, 1.0)}
    gain = ablate_stats.compare(arms["shuffle"], arms["ratio"], "beard_psnr", 1)
    assert 0.9 < gain["mean_diff"] < 1.1 and gain["p"] < 1e-6 and gain["n"] == 40
    same = ablate_stats.compare(arms["ratio"], arms["ratio_area"], "beard_psnr", 1)
    assert abs(same["mean_diff"]) < 0.2 and same["p"] > 0.01
    assert ablate_stats.wilcoxon_p(np.zeros(5)) is None
    m, sd = ablate_stats.seed_summary(arms["ratio"], "beard_psnr", 0)
    assert 25.5 < m < 26.5 and 0 <= sd < 0.2
    styles = ("none", "stubble", "mustache", "goatee", "full_beard")
    md = ablate_stats.table(arms, styles, {"none": 76, "stubble": 11, "mustache": 4,
                                           "goatee": 6, "full_beard": 3})
    lines = [x for x in md.splitlines() if x.startswith("| ")]
    assert lines[0].startswith("| style | share | shuffle | ratio | ratio_area | (a) ratio")
    assert [x.split(" | ")[0] for x in lines[1:6]] == ["| stubble", "| mustache", "| goatee",
                                                        "| full_beard", "| none"]
    assert "seeds per arm: [3]" in md and "+1.0" in lines[1]

