"""Training data: category-ratio acquisition (claim 2a), the ratio batch sampler (claim 2b) and
the paired crop dataset. Submodules are imported on demand (``beardnet.data.sampler`` etc.)."""
