"""Training: loss computation per step (``beardnet.train.step``) and the Ray Train job."""
