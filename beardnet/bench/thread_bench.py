"""Diagnostic: one training step on a process's main thread vs in a second thread.

Ray Train runs the training function in a thread of its worker; this measures what that alone
costs with the job's model, loss and optimiser (README "Benchmarks"):
``python -m beardnet.bench.thread_bench [THREADS]``.
"""

from __future__ import annotations

import os
import tempfile
import time

from beardnet.bench.train_bench import (
    _build_net,
    _default_model_kwargs,
    _loss_fn,
    _train_step,
    bench_config,
    job_batches,
    render_crops,
)


def thread_vs_main(data_uri: str, threads: int, steps: int = 20,
                   rounds: int = 3) -> list[tuple[float, float]]:
    """Seconds for ``steps`` training steps (one fixed batch, no loading) on this process's
    main thread and then in a new thread, ``rounds`` times, with ``threads`` torch threads
    (Ray Train runs the training function in a thread of its worker; README "Benchmarks")."""
    import threading

    import torch

    torch.set_num_threads(threads)
    cfg = bench_config(data_uri)
    net = _build_net(_default_model_kwargs())
    loss_fn = _loss_fn()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    batch = next(job_batches(cfg))

    def timed() -> float:
        t0 = time.perf_counter()
        for _ in range(steps):
            _train_step(net, opt, loss_fn, batch)
        return time.perf_counter() - t0

    def in_thread() -> float:
        out: list[float] = []
        th = threading.Thread(target=lambda: out.append(timed()))
        th.start()
        th.join()
        return out[0]

    timed()  # warm-up
    return [(timed(), in_thread()) for _ in range(rounds)]


if __name__ == "__main__":  # python -m beardnet.bench.thread_bench [THREADS]
    import sys

    n_threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory(prefix="beardnet-bench-crops-") as tmp_dir:
        crops = render_crops(os.path.join(tmp_dir, "crops"), identities=24)
        for main_s, thread_s in thread_vs_main(crops, n_threads):
            print(f"{n_threads} thread(s), 20 steps: main thread {main_s:.2f} s, "
                  f"second thread {thread_s:.2f} s ({thread_s / main_s:.2f}x)")
