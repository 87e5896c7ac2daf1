"""The driver of the multi-node test (test_multinode.py), in its own process and folder.

It joins the cluster at ``RAY_ADDRESS`` (the pytest process may already hold its own local
Ray), runs the training job and then the transform job described by the JSON file given as
its only argument, and prints one JSON line: the node ids and what the jobs returned. S3
settings come from its environment only (no credentials passed to the jobs: every worker
resolves its own).
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(spec_path: str) -> None:
    import ray

    from beardnet.config import load_config
    from beardnet.infer.config import TransformConfig
    from beardnet.infer.job import run_transform
    from beardnet.raysession import init_ray
    from beardnet.train.config import TrainConfig
    from beardnet.train.job import run_training

    with open(spec_path) as f:
        spec = json.load(f)
    init_ray()
    want, t_end = os.environ.get("MULTINODE_WAIT_FOR"), time.time() + 120
    while want and not ray.cluster_resources().get(want) and time.time() < t_end:
        time.sleep(0.5)  # the second node registers after the head
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    driver_node = ray.get_runtime_context().get_node_id()
    res = run_training(load_config(TrainConfig, None, spec["train_sets"]), progress=False)
    train = {"ok": res.ok, "error": res.error, "metrics": res.metrics, "model_uri": res.model_uri}
    summary = None
    if res.ok:
        job = {**spec["transform"]["job"], "model": res.model_uri}
        tcfg = TransformConfig.model_validate({**spec["transform"], "job": job})
        summary = run_transform(tcfg)
    print(json.dumps({"nodes": nodes, "driver_node": driver_node, "cwd": os.getcwd(),
                      "train": train, "transform": summary}, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
