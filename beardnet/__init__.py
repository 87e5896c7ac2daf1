"""beardnet: a beard transformation network trained by category ratio, sampling ratio and
beard/face area ratio (patent CN112241709A), with Ray Train training and a Ray Data transform."""

__version__ = "0.1.0"
