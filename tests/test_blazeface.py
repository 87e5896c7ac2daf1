"""The whole-level BlazeFace detector (onnxruntime) against MediaPipe's own graph."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from beardnet.faces import blazeface as bf

ASSETS = Path(bf.__file__).parents[1] / "assets"


@pytest.fixture(scope="module")
def detector() -> bf.BlazeFaceMap:
    return bf.BlazeFaceMap()


@pytest.fixture(scope="module")
def window() -> np.ndarray:
    """A 128x128 window of a real portrait with its face ~50 px wide."""
    img = cv2.imread(str(ASSETS / "real_pd" / "grace_hopper.jpg"))[:, :, ::-1]
    side = min(img.shape[:2])
    return np.ascontiguousarray(
        cv2.resize(img[:side, :side], (128, 128), interpolation=cv2.INTER_AREA))


def _mediapipe(image: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    import mediapipe as mp

    h, w = image.shape[:2]
    with mp.solutions.face_detection.FaceDetection(model_selection=0) as det:
        out = []
        for d in det.process(image).detections or []:
            rb = d.location_data.relative_bounding_box
            box = np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w,
                            (rb.ymin + rb.height) * h])
            kps = np.array([[k.x * w, k.y * h] for k in d.location_data.relative_keypoints])
            out.append((float(d.score[0]), box, kps))
    return out


def test_anchor_grid_matches_the_model_outputs(detector) -> None:
    assert bf.anchor_centres(128, 128).shape == (896, 2)
    assert bf.anchor_centres(128, 128)[0].tolist() == [4.0, 4.0]
    assert bf.anchor_centres(128, 128)[512].tolist() == [8.0, 8.0]  # first stride-16 cell
    x = np.zeros((1, 96, 160, 3), np.float32)
    reg, cls = detector._session.run(None, {detector._input: x})
    assert reg.shape[1] == cls.shape[1] == len(bf.anchor_centres(96, 160))


def test_converted_model_reproduces_mediapipe_detections(detector, window) -> None:
    """Same network, same decoding: on a 128x128 input (MediaPipe's own size) the scores,
    boxes and keypoints are MediaPipe's."""
    want = _mediapipe(window)
    got = detector.detect_whole(window)
    assert len(want) == len(got) == 1
    score, box, kps = want[0]
    assert abs(got.scores[0] - score) < 1e-3
    np.testing.assert_allclose(got.boxes[0], box, atol=0.2)
    np.testing.assert_allclose(got.keypoints[0], kps, atol=0.2)


def test_letterboxed_small_image_maps_back_to_its_pixels(detector, window) -> None:
    wide = np.ascontiguousarray(window[16:112])  # 96 x 128: letterboxed, as MediaPipe does
    want = _mediapipe(wide)
    got = detector.detect_whole(wide)
    assert len(want) == len(got) == 1
    np.testing.assert_allclose(got.boxes[0], want[0][1], atol=1.0)


def test_whole_level_finds_faces_anywhere_and_tiles_large_levels(detector, window) -> None:
    """One call scans a level of any size; a level past ``MAX_TILE`` is cut into overlapping
    tiles and a face across a tile edge is found once, where a direct call finds it."""
    rng = np.random.default_rng(0)
    canvas = rng.integers(90, 140, (600, 2100, 3), dtype=np.uint8)
    spots = [(40, 60), (940, 300), (1900, 420)]  # the middle one straddles x = 1024
    for x, y in spots:
        canvas[y : y + 128, x : x + 128] = window
    ref = _mediapipe(window)[0][1]
    calls = detector.calls
    found = detector.detect(canvas)
    assert detector.calls - calls == 3  # tiles at x = 0, 832, 1076
    strong = found.boxes[found.scores > 0.75]
    assert len(strong) == 3
    for x, y in spots:
        want = ref + np.array([x, y, x, y])
        assert min(np.abs(b - want).max() for b in strong) < 2.0
    direct = bf.weighted_nms(detector._run(canvas))
    assert (direct.scores > 0.75).sum() == 3


def test_weighted_nms_blends_overlaps_by_score() -> None:
    d = bf.Detections(
        np.array([0.6, 0.9, 0.8], np.float32),
        np.array([[10, 10, 50, 50], [12, 10, 52, 50], [200, 200, 240, 240]], np.float32),
        np.zeros((3, 6, 2), np.float32),
    )
    out = bf.weighted_nms(d)
    assert len(out) == 2 and out.scores.tolist() == pytest.approx([0.9, 0.8])
    assert out.boxes[0][0] == pytest.approx((10 * 0.6 + 12 * 0.9) / 1.5)
    assert out.boxes[1].tolist() == [200, 200, 240, 240]
    assert len(bf.weighted_nms(bf.empty())) == 0


def test_min_score_is_validated() -> None:
    with pytest.raises(ValueError, match="min_score"):
        bf.BlazeFaceMap(min_score=1.0)


def test_map_detector_finds_the_scene_faces_the_windows_find() -> None:
    """The whole-level scan finds every face MediaPipe's graph finds window by window, with no
    more false faces, in a third of the calls."""
    from beardnet.bench.locator_bench import scene_items, score_faces
    from beardnet.faces.mediapipe_locator import MediaPipeLocator
    from beardnet.infer.codec import decode

    by_map = MediaPipeLocator(detector="map")
    by_windows = MediaPipeLocator(detector="windows")
    totals = {"map": [0, 0, 0], "windows": [0, 0, 0]}
    for it in scene_items(16, seed=2000):
        img = decode(it["data"], it["key"]).image
        for name, loc in (("map", by_map), ("windows", by_windows)):
            n, hit, false = score_faces(loc.locate(img), it["boxes"], 48)
            totals[name] = [a + b for a, b in zip(totals[name], (n, hit, false), strict=True)]
    assert totals["map"][0] >= 16
    assert totals["map"][1] >= totals["windows"][1] >= 0.8 * totals["map"][0]
    assert totals["map"][2] <= totals["windows"][2]
    assert by_map.calls < by_windows.calls / 3  # one call per level, not per window
    with pytest.raises(ValueError, match="detector"):
        MediaPipeLocator(detector="tiles")


def test_flat_blob_check_separates_a_face_from_its_flat_copy() -> None:
    """A real face's oval varies well past ``FLAT_FACE``; the same oval on a flat disc not."""
    from beardnet.faces import get_locator
    from beardnet.faces.mesh import FLAT_FACE, oval_variation

    img = np.ascontiguousarray(
        cv2.imread(str(ASSETS / "real_pd" / "grace_hopper.jpg"))[:, :, ::-1])
    (face,) = get_locator("mediapipe").locate(img)
    assert face.landmarks is not None
    assert oval_variation(img, face) > 1.5 * FLAT_FACE
    flat = np.full_like(img, 120)
    cx, cy = (face.box[:2] + face.box[2:]) / 2
    cv2.circle(flat, (int(cx), int(cy)), int(face.size), (200, 180, 150), -1)
    assert oval_variation(flat, face) < 0.2 * FLAT_FACE
    assert oval_variation(img, type(face)(face.box, 0.6, face.left_eye, face.right_eye,
                                          face.mouth)) == 0.0  # no mesh: nothing to measure


def test_committed_model_was_made_from_the_installed_mediapipe_model(detector) -> None:
    import hashlib

    import mediapipe

    tflite = (Path(mediapipe.__file__).parent / "modules" / "face_detection"
              / "face_detection_short_range.tflite")
    meta = detector._session.get_modelmeta().custom_metadata_map
    assert meta["source_sha256"] == hashlib.sha256(tflite.read_bytes()).hexdigest()
