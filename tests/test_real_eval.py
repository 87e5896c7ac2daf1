"""`beardnet eval --real`: the metrics fail deliberately bad outputs and pass an unchanged face.

Runs on the committed public-domain photos (beardnet/assets/real_pd), no Ray, no apt package.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from beardnet.evaluate import real_metrics as rm
from beardnet.evaluate.real_set import by_photo, match, read_labels
from beardnet.evaluate.real_zones import face_zones
from beardnet.infer.codec import decode, encode_like

ROOT = Path(__file__).resolve().parents[1]
PD = ROOT / "beardnet" / "assets" / "real_pd"
LABELS = ROOT / "infra" / "realset" / "labels.csv"


@pytest.fixture(scope="module")
def faces():
    """name -> (decoded photo, zones of its one face)."""
    from beardnet.faces import get_locator

    loc = get_locator("mediapipe", min_face_px=40)
    out = {}
    for name in ("astronaut.png", "grace_hopper.jpg"):
        dec = decode((PD / name).read_bytes(), name)
        found = [f for f in loc.locate(dec.image) if f.landmarks is not None]
        assert len(found) == 1, name
        out[name] = (dec, face_zones(found[0], dec.image.shape))
    return out


def strands(img: np.ndarray, mask: np.ndarray, seed: int, density: float = 0.6) -> np.ndarray:
    """Dark hair-like strands (short anti-aliased lines, mostly downwards) drawn inside mask."""
    rng = np.random.default_rng(seed)
    ys, xs = np.nonzero(mask)
    length = max(3.0, 0.02 * float(np.ptp(xs)))
    layer = img.copy()
    for k in rng.integers(0, len(ys), int(density * len(ys) / 4)):
        a = np.pi / 2 + rng.normal(0, 0.5)
        n = length * rng.uniform(0.6, 1.4)
        x, y = int(xs[k]), int(ys[k])
        end = (round(x + n * float(np.cos(a))), round(y + n * float(np.sin(a))))
        colour = tuple(int(c * rng.uniform(0.6, 1.4)) for c in (45, 32, 25))
        cv2.line(layer, (x, y), end, colour, 1, cv2.LINE_AA)
    out = img.copy()
    out[mask] = layer[mask]
    return out


def test_unchanged_face_passes_protection(faces) -> None:
    for dec, z in faces.values():
        img = dec.image
        same = decode(encode_like(dec, img, 92)).image  # what the product writes, unedited
        s = rm.score_face(img, same, z, "none", "none", ref_texture=10.0)["passed"]
        assert s == {"eyes_nose": True, "lips": True, "clean_lower_face": True}
        out = rm.score_outside(img, same, same, z.grown_oval(0.15))
        assert out["passed"] == {"outside": True}
        # An addition that changed nothing is not covered.
        add = rm.score_face(img, same, z, "none", "goatee", ref_texture=10.0)["passed"]
        assert add["eyes_nose"] and add["lips"] and not add["coverage"] and not add["texture"]


def test_whitened_lips_fail_lip_protection(faces) -> None:
    dec, z = faces["astronaut.png"]
    img = dec.image
    white = img.copy()
    white[z.lips] = (245, 240, 238)
    s = rm.score_face(img, white, z, "none", "none", ref_texture=10.0)
    assert s["values"]["lips_db"] < rm.LIPS_DB
    assert not s["passed"]["lips"] and s["passed"]["eyes_nose"]


def test_changes_outside_the_face_fail(faces) -> None:
    dec, z = faces["grace_hopper.jpg"]
    img = dec.image
    noisy = img.copy()
    noisy[:40] = 255 - noisy[:40]  # a band across the top of the photo
    reenc = decode(encode_like(dec, img, 92)).image
    assert rm.score_outside(img, noisy, reenc, z.grown_oval(0.15))["passed"] == {"outside": False}


def test_smooth_dark_patch_as_goatee_fails_texture(faces) -> None:
    g_dec, g_z = faces["grace_hopper.jpg"]
    ref = rm.texture(strands(g_dec.image, g_z.goatee, 1), g_z.goatee)  # hair-like reference
    dec, z = faces["astronaut.png"]
    img = dec.image
    patch = img.copy()
    patch[z.goatee] = (60, 42, 30)
    patch = np.where(z.goatee[..., None], cv2.GaussianBlur(patch, (0, 0), 2.0), img)
    bad = rm.score_face(img, patch, z, "none", "goatee", ref)
    assert bad["passed"]["coverage"] and bad["passed"]["spill"]
    assert not bad["passed"]["texture"], bad["values"]
    hairy = rm.score_face(img, strands(img, z.goatee, 2), z, "none", "goatee", ref)
    assert hairy["passed"]["coverage"] and hairy["passed"]["texture"], hairy["values"]


def test_flat_skin_patch_over_a_beard_fails_removal(faces) -> None:
    dec, z = faces["astronaut.png"]
    clean = dec.image
    bearded = strands(clean, z.full_beard, 3)  # the input: a face with a beard
    skin = rm.mean_lab(clean, z.cheek)
    assert skin is not None
    flat = bearded.copy()
    flat[z.full_beard] = np.median(clean[z.cheek], axis=0).astype(np.uint8)
    bad = rm.score_face(bearded, flat, z, "full_beard", "none", ref_texture=None)
    assert bad["passed"]["removal_texture"] and bad["passed"]["skin_colour"]
    assert not bad["passed"]["skin_texture"], bad["values"]
    # The real clean face is a good removal: less texture than the beard, skin-like, skin colour.
    good = rm.score_face(bearded, clean, z, "full_beard", "none", ref_texture=None)
    assert good["passed"] == {
        "eyes_nose": True,
        "lips": True,
        "removal_texture": True,
        "skin_texture": True,
        "skin_colour": True,
    }, good["values"]
    # Leaving the beard in place fails removal.
    kept = rm.score_face(bearded, bearded, z, "full_beard", "none", ref_texture=None)
    assert not kept["passed"]["removal_texture"]


def test_zones_are_anatomical(faces) -> None:
    for _dec, z in faces.values():
        for name in ("mustache", "goatee", "full_beard", "cheek", "lips", "eyes_nose"):
            assert getattr(z, name).sum() > 50, name
        assert not (z.full_beard & z.lips).any() and not (z.goatee & z.lips).any()
        assert not (z.full_beard & z.eyes_nose).any() and not (z.cheek & z.full_beard).any()
        ys = {n: np.nonzero(getattr(z, n))[0].mean() for n in ("eyes_nose", "mustache", "goatee")}
        assert ys["eyes_nose"] < ys["mustache"] < ys["goatee"]
        assert (z.mustache & z.full_beard).sum() > 0.8 * z.mustache.sum()


def test_committed_labels_are_consistent() -> None:
    faces = read_labels(str(LABELS))
    assert len(faces) >= 80
    assert all(f.width >= 60 for f in faces)
    train = {f.identity for f in faces if f.split == "train"}
    scored = {f.identity for f in faces if f.split == "eval"}
    assert not train & scored
    photos_train = {f.file for f in faces if f.split == "train"}
    assert not photos_train & {f.file for f in faces if f.split == "eval"}
    assert all(f.facial_hair == "none" for f in faces if f.split == "train")
    ev = by_photo(faces, "eval")
    assert "pd/grace_hopper.jpg" in ev and "pd/astronaut.png" in ev
    sources = (ROOT / "infra" / "realset" / "SOURCES.md").read_text()
    assert all(f"| {f.file} |" in sources for f in faces)


def test_bad_labels_fail_naming_the_field(tmp_path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text("file,x0,y0,x1,y1,facial_hair,identity\na.jpg,0,0,10,10,none,x\n")
    with pytest.raises(ValueError, match="split"):
        read_labels(str(p))
    p.write_text("file,x0,y0,x1,y1,facial_hair,identity,split\na.jpg,0,0,10,10,beard,x,eval\n")
    with pytest.raises(ValueError, match="facial_hair"):
        read_labels(str(p))


def test_match_is_one_to_one() -> None:
    a = [np.array([0, 0, 10, 10.0]), np.array([20, 0, 30, 10.0])]
    b = [np.array([21, 1, 31, 11.0]), np.array([1, 0, 11, 10.0]), np.array([50, 50, 60, 60.0])]
    assert match(a, b) == [1, 0]
    assert match(a, b[2:]) == [None, None]


def test_eval_real_cli_on_public_domain_photos(tmp_path, capsys) -> None:
    from beardnet.cli import main

    real = tmp_path / "set"
    (real / "pd").mkdir(parents=True)
    rows = [r for r in csv.DictReader(LABELS.open()) if r["file"].startswith("pd/")]
    with (real / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for name in ("astronaut.png", "grace_hopper.jpg"):
        (real / "pd" / name).write_bytes((PD / name).read_bytes())
    out = tmp_path / "out"
    rc = main(["eval", "--real", str(real), "--styles", "none,goatee", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| style |" in printed and "| goatee |" in printed
    rep = json.loads((out / "real_metrics.json").read_text())
    assert rep["faces_scored"] == 2 and rep["styles"] == ["none", "goatee"]
    assert {(c["file"], c["style"]) for c in rep["faces"]} == {
        (f, s) for f in ("pd/astronaut.png", "pd/grace_hopper.jpg") for s in ("none", "goatee")
    }
    for s in ("none", "goatee"):
        assert rep["summary"][s]["eyes_nose"]["n"] == 2 and rep["summary"][s]["outside"]["n"] == 2
    assert rep["summary"]["none"]["clean_lower_face"]["n"] == 2
    assert rep["summary"]["goatee"]["coverage"]["n"] == 2
    sheet = cv2.imread(str(out / "real_sheet_goatee.png"))
    # Native resolution: Grace Hopper's face (188 px wide) is not shrunk in the sheet.
    assert sheet.shape[0] > 188 and sheet.shape[1] >= 2 * 188


def test_evaluate_modules_have_no_import_cycle() -> None:
    pkg = ROOT / "beardnet" / "evaluate"
    graph: dict[str, set[str]] = {}
    for f in pkg.glob("*.py"):
        mod = f"beardnet.evaluate.{f.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                deps |= {n for n in names if n.startswith("beardnet.evaluate.")}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("beardnet.evaluate.")}
        graph[mod] = deps - {mod}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for d in graph.get(todo.pop(), ()):
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return seen

    assert all(m not in reach(m) for m in graph), {m: reach(m) for m in graph if m in reach(m)}
