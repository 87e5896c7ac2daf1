"""Benchmarks (issue 6): side-by-side ratios measured in one run.

``beardnet bench [--quick]`` runs the parts below and writes ``bench/results/<date>-<host>.json``
and ``.md``:

- :mod:`beardnet.bench.sampler_bench`: epoch planning time and peak memory of the ratio sampler;
- :mod:`beardnet.bench.train_bench`: plain torch loop vs Ray Train with 1 and 2 workers;
- :mod:`beardnet.bench.faces_bench`: face locator rate and one transform actor's peak RSS;
- :mod:`beardnet.bench.transform_bench`: the transform job end to end vs the raw network;
- :mod:`beardnet.bench.report`: targets, JSON and the Markdown table.

Every target is a ratio (or an absolute bound) from the same run, because the machine is shared.
"""

from __future__ import annotations
