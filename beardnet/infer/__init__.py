"""Claim 1 at archive scale: decode -> faces -> align -> network -> paste back -> encode.

``codec`` and ``transform`` are pure per-image functions (no Ray); the Ray Data job builds on them.
"""

from __future__ import annotations
