"""A labelled set of real photos: a folder or prefix of photos plus a per-face labels table.

The labels file (CSV or Parquet; by default ``labels.csv`` or ``labels.parquet`` inside the
set's folder) has one row per face at least 60 px wide:

- ``file``: the photo's path relative to the set's folder (``dlib/faces/x.jpg``);
- ``x0, y0, x1, y1``: the face box in image pixels (matched to located faces by IoU);
- ``facial_hair``: ``none``, ``stubble``, ``mustache``, ``goatee`` or ``full_beard``;
- ``identity``: who it is; ``split``: ``eval`` (scored, never trained on) or ``train`` (may
  build training composites).

``face`` (index in the photo), ``width`` and ``note`` are optional. The repository's set is
assembled by ``infra/realset/build.sh`` (labels: ``infra/realset/labels.csv``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from beardnet.storage import S3Settings

FACIAL_HAIR = ("none", "stubble", "mustache", "goatee", "full_beard")
SPLITS = ("eval", "train")
REQUIRED = ("file", "x0", "y0", "x1", "y1", "facial_hair", "identity", "split")
LABEL_NAMES = ("labels.csv", "labels.parquet")


@dataclass
class LabelledFace:
    """One labelled face of a photo."""

    file: str
    box: np.ndarray  # float [x0, y0, x1, y1]
    facial_hair: str
    identity: str
    split: str
    face: int = 0

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])


def labels_uri_of(real: str, labels: str | None = None, s3: S3Settings | None = None) -> str:
    """The labels file: ``labels`` when given, else the first of :data:`LABEL_NAMES` in ``real``."""
    from beardnet import storage

    if labels:
        return labels
    for name in LABEL_NAMES:
        uri = storage.join(real, name)
        if storage.exists(uri, s3=s3):
            return uri
    raise ValueError(f"{real}: no labels file ({' or '.join(LABEL_NAMES)}); pass --labels URI")


def read_labels(uri: str, s3: S3Settings | None = None) -> list[LabelledFace]:
    """Read and check a labels table (ValueError naming the bad column or row)."""
    import pandas as pd

    from beardnet import storage

    raw = storage.read_bytes(uri, s3=s3)
    if uri.endswith(".parquet"):
        df = pd.read_parquet(io.BytesIO(raw))
    else:
        df = pd.read_csv(io.BytesIO(raw), dtype={"file": str, "identity": str, "split": str})
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{uri}: labels lack column(s) {', '.join(missing)}")
    out = []
    for i, r in enumerate(df.itertuples(index=False)):
        if r.facial_hair not in FACIAL_HAIR:
            raise ValueError(
                f"{uri}: row {i + 2}: facial_hair {r.facial_hair!r} is not one of "
                f"{', '.join(FACIAL_HAIR)}"
            )
        if r.split not in SPLITS:
            raise ValueError(f"{uri}: row {i + 2}: split {r.split!r} is not one of eval, train")
        box = np.array([r.x0, r.y0, r.x1, r.y1], np.float64)
        if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"{uri}: row {i + 2}: bad box {box.tolist()}")
        face = int(getattr(r, "face", i)) if "face" in df.columns else i
        out.append(LabelledFace(str(r.file), box, r.facial_hair, str(r.identity), r.split, face))
    return out


def by_photo(faces: list[LabelledFace], split: str = "eval") -> dict[str, list[LabelledFace]]:
    """Faces of ``split`` (``all``: every row) grouped by photo, photos in sorted order."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split {split!r} is not one of eval, train, all")
    groups: dict[str, list[LabelledFace]] = {}
    for f in faces:
        if split == "all" or f.split == split:
            groups.setdefault(f.file, []).append(f)
    return dict(sorted(groups.items()))


def match(label_boxes: list[np.ndarray], face_boxes: list[np.ndarray], min_iou: float = 0.3):
    """Greedy one-to-one matching by IoU: ``result[i]`` is the face index of label ``i`` or
    None."""
    from beardnet.faces import box_iou

    pairs = sorted(
        (
            (box_iou(lb, fb), i, j)
            for i, lb in enumerate(label_boxes)
            for j, fb in enumerate(face_boxes)
        ),
        reverse=True,
    )
    res: list[int | None] = [None] * len(label_boxes)
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if res[i] is None and j not in used:
            res[i] = j
            used.add(j)
    return res
