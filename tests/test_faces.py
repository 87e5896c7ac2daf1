"""Faces: locator on rendered faces, beard zone, alignment and paste-back."""

from __future__ import annotations

import time

import numpy as np
import pytest

from beardnet.faces import Face, box_iou, get_locator, nms
from beardnet.faces.align import (
    align,
    face_transform,
    feather_alpha,
    invert,
    paste_back,
    similarity,
    transform_points,
)
from beardnet.faces.regions import (
    FACE_OVAL,
    Zone,
    beard_area_ratio,
    beard_zone,
    beard_zone_in_crop,
    face_region,
)
from beardnet.geometry import canonical_points

cv2 = pytest.importorskip("cv2")


def _render(seed: int, category: str = "goatee", size: int = 192):
    from beardnet.synth.render import render_identity

    return render_identity(seed, size)


def compose_scene(
    seed: int, sizes: list[int], canvas: tuple[int, int] = (480, 720)
) -> tuple[np.ndarray, list[np.ndarray], list[dict]]:
    """Rendered crops pasted side by side on a noisy background: (image, gt boxes, landmarks)."""
    from beardnet.synth.render import render_crop

    rng = np.random.default_rng(seed)
    h, w = canvas
    img = (rng.random((h, w, 3)) * 40 + 90).astype(np.uint8)
    boxes, lms = [], []
    x = 10
    for i, s in enumerate(sizes):
        c = render_crop(seed * 10 + i, ("goatee", "full_beard", "none", "mustache")[i % 4], s)
        y = (h - s) // 2 + int(rng.integers(-20, 21))
        y = int(np.clip(y, 0, h - s))
        img[y : y + s, x : x + s] = c.image
        ys, xs = np.nonzero(c.face_mask)
        boxes.append(
            np.array([xs.min() + x, ys.min() + y, xs.max() + 1 + x, ys.max() + 1 + y], np.float32)
        )
        lms.append({k: np.array(v) + [x, y] for k, v in c.landmarks.items()})
        x += s + 10
    assert x <= w, "scene too small for the faces"
    return img, boxes, lms


@pytest.fixture(scope="module")
def locator():
    return get_locator("mediapipe")


# ------------------------------------------------------------------ geometry (no detector)


def _face_from_points(le, re, mouth, landmarks=None) -> Face:
    pts = np.array([le, re, mouth], np.float32)
    d = np.linalg.norm(pts[1] - pts[0])
    box = np.array(
        [
            pts[:, 0].min() - d * 0.6,
            pts[:, 1].min() - d * 0.8,
            pts[:, 0].max() + d * 0.6,
            pts[:, 1].max() + d * 0.8,
        ],
        np.float32,
    )
    return Face(box, 1.0, pts[0], pts[1], pts[2], landmarks, "test")


def test_similarity_closed_form_recovers_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.random((5, 2)) * 100
    ang, s, t = 0.4, 1.7, np.array([12.0, -5.0])
    R = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ R.T + t
    M = similarity(src, dst)
    assert np.allclose(M[:, :2], R, atol=1e-9) and np.allclose(M[:, 2], t, atol=1e-9)
    assert np.allclose(transform_points(invert(M), dst), src, atol=1e-9)
    with pytest.raises(ValueError):
        similarity(np.zeros((3, 2)), dst[:3])


def test_align_maps_canonical_points_and_crop_content() -> None:
    # A rotated, scaled face: eyes and mouth drawn as coloured dots.
    img = np.full((400, 500, 3), 128, np.uint8)
    ang = np.deg2rad(20)
    c, s = np.cos(ang), np.sin(ang)
    centre = np.array([260.0, 210.0])
    d = 90.0
    pts = {
        "le": centre + d * np.array([-0.5 * c, -0.5 * s]),
        "re": centre + d * np.array([0.5 * c, 0.5 * s]),
    }
    down = np.array([-s, c])
    pts["mouth"] = centre + down * d * 1.0  # canonical: mouth 1.0 eye-distance below eyes
    colours = {"le": (255, 0, 0), "re": (0, 255, 0), "mouth": (0, 0, 255)}
    for k, p in pts.items():
        cv2.circle(img, tuple(int(np.rint(v)) for v in p), 6, colours[k], -1)
    face = _face_from_points(pts["le"], pts["re"], pts["mouth"])
    crop, M = align(img, face, 128)
    assert crop.shape == (128, 128, 3)
    can = canonical_points(128)
    mapped = transform_points(M, face.points())
    assert np.abs(mapped - can).max() < 1e-3
    for (k, col), p in zip(colours.items(), can, strict=True):
        px = crop[int(np.rint(p[1])), int(np.rint(p[0]))]
        assert np.argmax(px) == int(np.argmax(col)) and px.max() > 200, (k, px)


def test_align_large_face_preshrinks_consistently() -> None:
    # A 1200-px face: the area-averaged path must land the points where the plain warp does.
    img = np.full((1600, 1600, 3), 100, np.uint8)
    le, re, mouth = np.array([500.0, 600.0]), np.array([1100.0, 600.0]), np.array([800.0, 1200.0])
    for p, col in ((le, (255, 0, 0)), (re, (0, 255, 0)), (mouth, (0, 0, 255))):
        cv2.circle(img, tuple(int(v) for v in p), 25, col, -1)
    face = _face_from_points(le, re, mouth)
    crop, _ = align(img, face, 128)
    for p, ch in zip(canonical_points(128), (0, 1, 2), strict=True):
        px = crop[int(np.rint(p[1])), int(np.rint(p[0]))]
        assert np.argmax(px) == ch and px.max() > 200


def test_paste_back_inverts_align_and_keeps_outside_exact() -> None:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:300, 0:300]
    img = np.stack([x % 256, y % 256, (x * y) % 256], axis=2).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 3)  # smooth, so resampling error is small
    face = _face_from_points((120, 130), (180, 128), (152, 190))
    crop, M = align(img, face, 128)
    zone = beard_zone(face, img.shape)
    assert zone.area > 500
    # Pasting the unedited crop back (no source -> resampled twice) is close to the original.
    out = paste_back(img, crop, M, zone, feather_px=0)
    inside = zone.full(img.shape)
    assert np.array_equal(out[~inside], img[~inside])
    assert np.abs(out[inside].astype(int) - img[inside]).mean() < 3.0
    # With the source crop, an unedited crop changes nothing at all (delta = 0).
    same = paste_back(img, crop, M, zone, feather_px=5, source_crop=crop)
    assert np.array_equal(same, img)
    # A painted crop changes only zone pixels; fully inside the ramp it is the paint.
    paint = np.zeros_like(crop)
    paint[:] = (0, 255, 0)
    out = paste_back(img, paint, M, zone.full(img.shape), feather_px=4)
    assert np.array_equal(out[~inside], img[~inside])
    deep = cv2.erode(inside.astype(np.uint8), np.ones((11, 11), np.uint8)) > 0
    assert deep.any() and (out[deep][:, 1] >= 250).all()
    _ = rng


def test_feather_alpha_ramp() -> None:
    m = np.zeros((40, 40), bool)
    m[10:30, 10:30] = True
    a = feather_alpha(m, 5)
    assert a[~m].max() == 0
    assert a[20, 20] == 1.0
    assert 0 < a[10, 20] < a[12, 20] < 1.0
    assert np.array_equal(feather_alpha(m, 0) > 0, m)


def test_zone_roundtrip_and_ratio() -> None:
    full = np.zeros((50, 60), bool)
    full[10:20, 30:45] = True
    z = Zone.from_full(full)
    assert z.box == (30, 10, 45, 20) and z.area == 150
    assert np.array_equal(z.full(full.shape), full)
    assert beard_area_ratio(z, Zone(0, 0, np.ones((10, 30), bool))) == pytest.approx(0.5)
    assert beard_area_ratio(np.zeros(3), np.zeros(3)) == 0.0


def test_face_oval_indices_match_mediapipe_loop() -> None:
    mp = pytest.importorskip("mediapipe")
    edges = {frozenset(e) for e in mp.solutions.face_mesh.FACEMESH_FACE_OVAL}
    loop = {
        frozenset((FACE_OVAL[i], FACE_OVAL[(i + 1) % len(FACE_OVAL)]))
        for i in range(len(FACE_OVAL))
    }
    assert loop == edges


def test_nms_merges_duplicates() -> None:
    a = _face_from_points((100, 100), (140, 100), (120, 140))
    b = _face_from_points((101, 101), (141, 101), (121, 141))
    b.score = 0.5
    c = _face_from_points((300, 100), (340, 100), (320, 140))
    kept = nms([b, a, c])
    assert len(kept) == 2 and kept[0] is a
    assert box_iou(a.box, a.box) == pytest.approx(1.0)


# ------------------------------------------------------------------ MediaPipe locator


def test_locator_on_rendered_faces_landmarks_and_zone(locator) -> None:
    covs, ious = [], []
    for seed in range(6):
        r = _render(seed)
        pad = 96
        img = cv2.copyMakeBorder(r["full_beard"].image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        faces = locator.locate(img)
        assert len(faces) == 1, seed
        f = faces[0]
        assert f.landmarks is not None and f.landmarks.shape == (478, 2)
        lm = r["full_beard"].landmarks
        d = f.eye_distance
        for name, got in (("left_eye", f.left_eye), ("right_eye", f.right_eye), ("mouth", f.mouth)):
            assert np.linalg.norm(np.array(lm[name]) + pad - got) < 0.15 * d, (seed, name)
        ys, xs = np.nonzero(r["none"].face_mask)
        gt = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) + pad
        ious.append(box_iou(gt, f.box))
        # The beard zone covers the renderer's beards, and leaves eyes and nose tip out.
        zone = beard_zone(f, img.shape).full(img.shape)[pad:-pad, pad:-pad]
        beards = np.zeros_like(zone)
        for cat in ("stubble", "mustache", "goatee", "full_beard"):
            beards |= r[cat].beard_mask
        covs.append((zone & beards).sum() / beards.sum())
        for name in ("left_eye", "right_eye"):
            x, y = np.round(lm[name]).astype(int)
            assert not zone[y, x], (seed, name)
        oval = face_region(f, img.shape)
        assert 0.25 < beard_area_ratio(beard_zone(f, img.shape), oval) < 0.9
    assert min(ious) >= 0.5
    assert np.mean(covs) >= 0.95 and min(covs) >= 0.9, covs


def test_locator_multiple_faces_of_any_size(locator) -> None:
    img, boxes, _ = compose_scene(3, [64, 110, 200, 300], canvas=(420, 740))
    faces = locator.locate(img)
    assert len(faces) == 4
    for gt in boxes:
        assert max(box_iou(gt, f.box) for f in faces) >= 0.5
    # A small face in a big photo (tiles), and a close-up filling the frame.
    big = np.full((1500, 2000, 3), 110, np.uint8)
    from beardnet.synth.render import render_crop

    big[700:780, 1500:1580] = render_crop(7, "goatee", 80).image
    # 80 px is below the default 1/16 of this photo's short side: ask for 48 px faces here.
    found = get_locator("mediapipe", min_face_frac=0.0).locate(big)
    assert len(found) == 1 and found[0].box[0] > 1480 and found[0].box[1] > 680
    close = render_crop(8, "full_beard", 400).image
    assert len(locator.locate(close)) == 1


def test_locator_min_score_is_applied(locator) -> None:
    """MediaPipe's short-range graph ignores its own confidence setting: the locator must
    apply ``min_score`` itself."""
    img, _, _ = compose_scene(3, [64, 110, 200, 300], canvas=(420, 740))
    faces = locator.locate(img)
    cut = min(f.score for f in faces) + 1e-3  # just above the weakest face's best detection
    strict = get_locator("mediapipe", min_score=cut).locate(img)
    assert len(strict) < len(faces)
    assert all(f.score >= cut for f in strict)


def test_locator_blank_and_bad_input(locator) -> None:
    assert locator.locate(np.full((200, 300, 3), 127, np.uint8)) == []
    with pytest.raises(ValueError):
        locator.locate(np.zeros((10, 10), np.uint8))


def test_graph_shortcut_matches_mediapipe_process() -> None:
    """The locator's direct graph call (no per-call namedtuple) gives what ``process`` gives,
    and falls back to ``process`` on an object without the pinned version's internals."""
    from pathlib import Path

    import cv2
    import mediapipe as mp

    from beardnet.faces import mp_graph

    asset = Path(mp_graph.__file__).parents[1] / "assets" / "real_pd" / "grace_hopper.jpg"
    img = np.ascontiguousarray(cv2.imread(str(asset))[:, :, ::-1])
    with mp.solutions.face_detection.FaceDetection(model_selection=0) as det:
        want = [(d.score[0], d.location_data.relative_bounding_box.xmin)
                for d in det.process(img).detections]
        got = [(d.score[0], d.location_data.relative_bounding_box.xmin)
               for d in mp_graph.solution_output(det, img, "detections")]
        assert len(want) == 1 and got == want
        blank = np.full((64, 64, 3), 127, np.uint8)
        assert mp_graph.solution_output(det, blank, "detections") is None
        with pytest.raises(ValueError):
            mp_graph.solution_output(det, img[:, :, :2].copy(), "detections")

    class Plain:
        def process(self, image):
            return type("Out", (), {"detections": ["x"]})()

    assert mp_graph.solution_output(Plain(), img, "detections") == ["x"]


def test_get_locator_is_cached_per_process() -> None:
    assert get_locator("mediapipe") is get_locator("mediapipe")
    with pytest.raises(ValueError):
        get_locator("nope")


def test_beard_zone_template_without_mesh(locator) -> None:
    r = _render(2)
    img = cv2.copyMakeBorder(r["full_beard"].image, 64, 64, 64, 64, cv2.BORDER_REPLICATE)
    f = locator.locate(img)[0]
    bare = Face(f.box, f.score, f.left_eye, f.right_eye, f.mouth, None, "test")
    zone = beard_zone(bare, img.shape).full(img.shape)[64:-64, 64:-64]
    beard = r["full_beard"].beard_mask
    assert (zone & beard).sum() / beard.sum() >= 0.9
    M = face_transform(bare, 128)
    zc, oc = beard_zone_in_crop(bare, M, 128)
    assert zc.any() and oc.any() and not zc[:40].any()  # nothing above the eyes in the crop


def test_haar_fallback_runs() -> None:
    haar = get_locator("haar")
    assert haar.locate(np.full((240, 320, 3), 127, np.uint8)) == []
    img, boxes, _ = compose_scene(5, [150, 150, 150], canvas=(300, 520))
    faces = haar.locate(img)
    # Haar misses many drawn faces; whatever it finds must be a real face.
    for f in faces:
        assert f.source == "haar" and f.landmarks is None
        assert max(box_iou(f.box, gt) for gt in boxes) > 0.3


# ------------------------------------------------------------------ scenes (when they exist)


def test_locator_hit_rate_on_synthetic_scenes(locator) -> None:
    scenes = pytest.importorskip("beardnet.synth.scenes")
    hits = total = n_found = 0
    dt = 0.0
    for seed in range(5):
        sc = scenes.render_scene(seed, n_faces=3)
        t0 = time.perf_counter()
        found = locator.locate(sc.image)
        dt += time.perf_counter() - t0
        n_found += len(found)
        for gt in sc.faces:
            box = np.asarray(gt["box"], np.float32)
            if max(box[2] - box[0], box[3] - box[1]) < 48:
                continue
            total += 1
            hits += any(box_iou(box, f.box) >= 0.5 for f in found)
    assert total >= 8
    rate = hits / total
    print(f"scene hit rate {hits}/{total} = {rate:.3f}; {n_found / dt:.1f} faces/s")
    assert rate >= 0.95


def test_locator_thread_safe(locator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    img, _, _ = compose_scene(11, [120, 160], canvas=(300, 330))
    ref = [f.box for f in locator.locate(img)]
    with ThreadPoolExecutor(3) as ex:
        results = list(ex.map(lambda _: [f.box for f in locator.locate(img)], range(3)))
    for boxes in results:
        assert len(boxes) == len(ref) == 2
        assert all(np.allclose(a, b) for a, b in zip(boxes, ref, strict=True))


@pytest.mark.parametrize("angle", [35, 60])
def test_locator_rolled_faces(locator, angle: int) -> None:
    from beardnet.synth.render import render_crop

    for seed in (0, 4):
        c = render_crop(seed, "full_beard", 200)
        img = cv2.copyMakeBorder(c.image, 100, 100, 100, 100, cv2.BORDER_REPLICATE)
        R = cv2.getRotationMatrix2D((200, 200), angle, 1.0)
        img = cv2.warpAffine(img, R, (400, 400), borderMode=cv2.BORDER_REPLICATE)
        gt = {k: transform_points(R, np.array(v)[None] + 100)[0] for k, v in c.landmarks.items()}
        faces = locator.locate(img)
        assert len(faces) == 1 and faces[0].landmarks is not None
        f = faces[0]
        d = np.linalg.norm(gt["right_eye"] - gt["left_eye"])
        for name, got in (("left_eye", f.left_eye), ("right_eye", f.right_eye), ("mouth", f.mouth)):
            assert np.linalg.norm(gt[name] - got) < 0.15 * d, (seed, name)


# ------------------------------------------------------------------ smallest face, reduced decode


def test_min_face_rule_and_locate_scale() -> None:
    from beardnet.faces import MESH_MIN_PX, locate_scale, min_face_for

    assert min_face_for(1024, 768, 48, 0.0) == 48
    assert min_face_for(6000, 4000, 48, 1 / 16) == 250  # the fraction wins on big photos
    assert min_face_for(640, 480, 48, 1 / 16) == 48  # the pixel floor wins on small ones
    assert locate_scale(1024, 768, 48, 0.0) == 1.0  # never upscale
    assert locate_scale(6000, 4000, 48, 1 / 16) == pytest.approx(250 / MESH_MIN_PX)
    assert locate_scale(4000, 3000, 192, 0.0) == pytest.approx(192 / MESH_MIN_PX)
    assert locate_scale(8000, 6000, 48, 1 / 16) > locate_scale(4000, 3000, 48, 1 / 16)
    with pytest.raises(ValueError):
        locate_scale(0, 10, 48)


def test_detection_plan_scales_with_photo_over_smallest_face() -> None:
    from beardnet.faces.mediapipe_locator import MediaPipeLocator

    loc = MediaPipeLocator(min_face_px=48, min_face_frac=1 / 16, mesh=False)
    small = sum(len(w) for _, w in loc.windows(1500, 1000))
    big = sum(len(w) for _, w in loc.windows(6000, 4000))
    assert big == small  # same photo/face ratio: same detector calls, whatever the pixels
    plan = loc.windows(1024, 768, min_face_px=48)
    assert plan[-1][1] == [(0, 0, -1)] and plan[0][0] < 1.0
    assert sum(len(w) for _, w in loc.windows(1024, 768, min_face_px=96)) < sum(
        len(w) for _, w in plan
    )


def test_reduced_image_finds_the_faces_of_the_full_image(locator) -> None:
    from beardnet.faces import get_locator, locate_scale
    from beardnet.synth.scenes import render_scene

    loc = get_locator("mediapipe", min_face_px=96, min_face_frac=0.0)
    compared = 0
    for seed in (3, 11, 21):
        sc = render_scene(seed, size=1600, n_faces=3)
        h, w = sc.image.shape[:2]
        k = locate_scale(w, h, 96, 0.0)
        assert k == 2.0
        small = cv2.resize(sc.image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        full = [f for f in loc.locate(sc.image) if f.size >= 96]
        reduced = [f.scaled(w / small.shape[1]) for f in loc.locate(small, min_face_px=48)]
        for f in full:
            compared += 1
            assert max(box_iou(f.box, g.box) for g in reduced) >= 0.7, seed
            g = max(reduced, key=lambda g: box_iou(f.box, g.box))
            assert np.linalg.norm(g.mouth - f.mouth) < 0.15 * f.eye_distance
    assert compared >= 3


def test_one_face_on_a_large_photo_is_found_once() -> None:
    from beardnet.bench.locator_bench import big_photo, locate_photo

    data, box = big_photo(1, width=4000, height=3000, face_px=500)
    res = locate_photo(data, min_face_px=48, min_face_frac=1 / 12, repeats=1)
    assert res["faces"] == 1 and res["factor"] > 2
    assert box_iou(np.asarray(res["boxes"][0]), np.asarray(box)) >= 0.6


def test_affine_closed_forms_match_linalg() -> None:
    from beardnet.affine import det, invert, scale_of, transform_points

    rng = np.random.default_rng(3)
    for _ in range(20):
        M = rng.normal(size=(2, 3)) * [1, 1, 50]
        full = np.vstack([M, [0, 0, 1]])
        assert det(M) == pytest.approx(np.linalg.det(full[:2, :2]), rel=1e-9, abs=1e-12)
        assert np.allclose(np.vstack([invert(M), [0, 0, 1]]), np.linalg.inv(full))
        pts = rng.normal(size=(7, 2)) * 100
        assert np.allclose(transform_points(M, pts), pts @ M[:, :2].T + M[:, 2])
        assert np.allclose(transform_points(invert(M), transform_points(M, pts)), pts)
    assert scale_of(np.array([[0.0, -2.0, 5.0], [2.0, 0.0, 1.0]])) == pytest.approx(2.0)
    with pytest.raises(np.linalg.LinAlgError):
        invert(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))
