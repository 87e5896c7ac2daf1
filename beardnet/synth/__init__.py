"""Synthetic faces with paired beards: crops for training, scenes for the transform job."""

from __future__ import annotations
