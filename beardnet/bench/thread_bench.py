"""Diagnostic: one training step on a process's main thread vs in a second thread.

Ray Train runs the training function in a thread of its worker; this measures what that alone
costs with the job's model, loss and optimiser (README "Benchmarks"):
``python -m beardnet.bench.thread_bench [THREADS]``; with ``--ray`` (inside
``infra/loopback.sh`` here) the plain loop runs in Ray actors instead, on their main thread
and in new threads (:func:`in_ray_actor`).
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
    plain_loop,
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


def in_ray_actor(data_uri: str, threads: int, rounds: int = 3) -> dict[str, list[float]]:
    """Samples/s of the bench's plain training loop (``plain_loop``, 60 steps) per round: in
    this process, in a Ray actor's method (its main thread), in a new thread of that actor
    (whose main thread has run the loop), and in a new thread of a fresh actor whose main
    thread never ran torch. Needs a Ray session with ``2 * threads`` CPUs (``ray.init``
    first): the fresh actor starts while the first still holds its CPUs."""
    import threading

    import ray

    def loop() -> float:
        return float(plain_loop(data_uri, 5, 60, threads)["samples_per_s"])

    @ray.remote(num_cpus=threads)
    class Runner:
        def main_thread(self) -> float:
            return loop()

        def new_thread(self) -> float:
            out: list[float] = []
            th = threading.Thread(target=lambda: out.append(loop()))
            th.start()
            th.join()
            return out[0]

    used = Runner.remote()
    ray.get(used.main_thread.remote())  # this actor's main thread has run torch
    res: dict[str, list[float]] = {"plain": [], "actor_main": [], "actor_new_thread": [],
                                   "fresh_actor_new_thread": []}
    for _ in range(rounds):
        res["plain"].append(loop())
        res["actor_main"].append(ray.get(used.main_thread.remote()))
        res["actor_new_thread"].append(ray.get(used.new_thread.remote()))
        fresh = Runner.remote()
        res["fresh_actor_new_thread"].append(ray.get(fresh.new_thread.remote()))
        ray.kill(fresh)
    return res


if __name__ == "__main__":  # python -m beardnet.bench.thread_bench [THREADS] [--ray]
    import sys

    args = [a for a in sys.argv[1:] if a != "--ray"]
    n_threads = int(args[0]) if args else 2
    with tempfile.TemporaryDirectory(prefix="beardnet-bench-crops-") as tmp_dir:
        crops = render_crops(os.path.join(tmp_dir, "crops"), identities=24)
        if "--ray" in sys.argv:  # inside infra/loopback.sh on this machine
            import ray

            # two actors at a time hold n_threads CPUs each (they never run at once)
            ray.init(num_cpus=2 * n_threads, include_dashboard=False, log_to_driver=False)
            for name, sps in in_ray_actor(crops, n_threads).items():
                print(f"{name}: {', '.join(f'{v:.1f}' for v in sps)} samples/s")
            raise SystemExit(0)
        for main_s, thread_s in thread_vs_main(crops, n_threads):
            print(f"{n_threads} thread(s), 20 steps: main thread {main_s:.2f} s, "
                  f"second thread {thread_s:.2f} s ({thread_s / main_s:.2f}x)")
