"""Calling MediaPipe ``mp.solutions`` graphs directly, and reading their detections."""

from __future__ import annotations

from typing import Any

import numpy as np

from beardnet.faces.blazeface import Detections, empty


def solution_output(solution: Any, image: np.ndarray, stream: str) -> Any:
    """``solution.process(image).<stream>`` of a MediaPipe ``mp.solutions`` graph, without the
    new ``namedtuple`` class that ``SolutionBase.process`` builds on every call (0.16 ms: 3 ms a
    photo at 18 detector calls). Falls back to ``process`` where the internals differ from the
    pinned version's."""
    try:
        graph, outputs = solution._graph, solution._graph_outputs
        ((name, kind),) = solution._input_stream_type_info.items()
        out_kind = solution._output_stream_type_info[stream]
        make_packet, packet_content = solution._make_packet, solution._get_packet_content
        stamp = int(solution._simulated_timestamp)
    except (AttributeError, KeyError, TypeError, ValueError):
        return getattr(solution.process(image), stream)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError("Input image must contain three channel rgb data.")
    outputs.clear()
    solution._simulated_timestamp = stamp + 33333  # as process(): a 30 fps stream of stills
    graph.add_packet_to_input_stream(
        stream=name, packet=make_packet(kind, image).at(stamp + 33333))
    graph.wait_until_idle()
    packet = outputs.get(stream)
    return None if packet is None else packet_content(out_kind, packet)


def detections_from(dets: Any, w: int, h: int) -> Detections:
    """MediaPipe detection protos on a ``w`` x ``h`` image as ``Detections`` in its pixels."""
    if not dets:
        return empty()
    size = np.array([w, h], np.float32)
    boxes, kps, scores = [], [], []
    for det in dets:
        rb = det.location_data.relative_bounding_box
        boxes.append(np.array([rb.xmin, rb.ymin, rb.xmin + rb.width, rb.ymin + rb.height]))
        kps.append(np.array([[k.x, k.y] for k in det.location_data.relative_keypoints][:6]))
        scores.append(float(det.score[0]) if det.score else 0.0)
    return Detections(np.array(scores, np.float32),
                      (np.array(boxes, np.float32).reshape(-1, 2, 2) * size).reshape(-1, 4),
                      np.array(kps, np.float32) * size)
