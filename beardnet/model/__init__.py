"""The beard transformation network and its artifact format.

``BeardNet`` (``beardnet.model.unet``), ``save_artifact`` / ``load`` / ``LoadedModel``
(``beardnet.model.artifact``). Importing this package imports torch.
"""

from __future__ import annotations

from beardnet.model.artifact import ArtifactError, LoadedModel, load, save_artifact
from beardnet.model.unet import BeardNet, count_flops, count_params

__all__ = [
    "ArtifactError",
    "BeardNet",
    "LoadedModel",
    "count_flops",
    "count_params",
    "load",
    "save_artifact",
]
