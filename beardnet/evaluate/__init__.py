"""Evaluation of beard transformation models: per-style metrics, the style classifier,
and the `beardnet eval` job (issue 3, item 8)."""

from __future__ import annotations
