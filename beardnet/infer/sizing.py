"""How many CPUs each network actor reserves, from measured stage costs.

The network is a small part of a photo's work on CPU nodes (decode, face location, paste-back
and encode cost the rest), so an actor that reserves a whole CPU keeps a read or write task from
running while it mostly waits for crops. When ``ray.network_num_cpus`` is left unset, the job
reserves for the actor pool its measured share of the work:

    network_num_cpus = cluster CPUs x network share / network_actors

rounded to a quarter CPU, at least a quarter and never more than leaves room for one read
and one write task. The share is the network's share of the summed stage seconds of the latest
earlier run into the same output (``OUT/_beardnet/runs/*.json``, runs of >= ``MIN_IMAGES``
photos: a nightly incremental job sizes itself from last night), else
:data:`DEFAULT_NETWORK_SHARE` (``make bench``, 2026-12-05: network 0.26 of stage seconds on
synthetic scenes with ~1.2 faces per photo).
"""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)

#: The network's share of per-photo stage seconds when no earlier run says otherwise.
DEFAULT_NETWORK_SHARE = 0.26
#: An earlier run counts only when it processed at least this many photos.
MIN_IMAGES = 20
#: Summaries read, newest first, looking for one that counts.
MAX_SUMMARIES = 5


def previous_network_share(output_uri: str, s3: Any = None) -> float | None:
    """The network's stage share in the newest earlier run into ``output_uri`` with at least
    :data:`MIN_IMAGES` photos, or None (no such run, or the runs cannot be read)."""
    from beardnet import storage
    from beardnet.infer.keys import meta_uri

    runs = meta_uri(output_uri, "runs")
    try:
        names = sorted(storage.list_keys(runs, (".json",), s3=s3), reverse=True)
    except Exception as e:  # noqa: BLE001 - sizing falls back to the default, never fails a run
        log.info("no earlier runs to size from (%s)", e)
        return None
    for name in names[:MAX_SUMMARIES]:
        try:
            summary = json.loads(storage.read_bytes(storage.join(runs, name), s3=s3))
        except Exception as e:  # noqa: BLE001 - a torn or foreign file: try the next
            log.info("run summary %s unreadable (%s): skipped for sizing", name, e)
            continue
        share = (summary.get("stage_share") or {}).get("network_s")
        if int(summary.get("images") or 0) >= MIN_IMAGES and isinstance(share, int | float) \
                and 0.0 < share <= 1.0:
            return float(share)
    return None


def network_cpus(
    total_cpus: float,
    network_share: float,
    actors: int,
    read_num_cpus: float,
    write_num_cpus: float,
) -> float:
    """CPUs each of ``actors`` network actors reserves (see the module docstring)."""
    room = (total_cpus - read_num_cpus - write_num_cpus) / max(1, actors)
    want = round(total_cpus * max(0.0, network_share) / max(1, actors) * 4) / 4
    return max(0.25, min(want, room))


def size_network(ray_cfg: Any, total_cpus: float, output_uri: str, s3: Any = None
                 ) -> dict[str, Any]:
    """The job's choice for its ``[ray]`` section on a cluster of ``total_cpus``:
    ``network_num_cpus`` (configured, or sized as in the module docstring, then with the
    ``network_share`` used and where it came from, ``share_from``); logged, and recorded as
    the run summary's ``sizing``."""
    r = ray_cfg
    if r.network_num_cpus is not None:
        log.info("network actors: %d x %g CPU (configured)", r.network_actors, r.network_num_cpus)
        return {"network_num_cpus": r.network_num_cpus}
    share = previous_network_share(output_uri, s3)
    out: dict[str, Any] = {
        "network_share": share if share is not None else DEFAULT_NETWORK_SHARE,
        "share_from": "earlier run" if share is not None else "default",
    }
    out["network_num_cpus"] = network_cpus(total_cpus, out["network_share"], r.network_actors,
                                           r.read_num_cpus, r.write_num_cpus)
    log.info("network actors: %d x %g CPU (network share %.2f, %s)", r.network_actors,
             out["network_num_cpus"], out["network_share"], out["share_from"])
    return out
