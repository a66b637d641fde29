"""The engine's defaults for a run, kept free of torch so ``facefix train --help`` can state
them without loading PyTorch (:class:`~facefix.training.trainer.TrainConfig` uses them)."""

ITERS = 1000
BATCH_SIZE = 4
WORKERS = 2
SEED = 0
VAL_EVERY = 500
CHECKPOINT_EVERY = 1000
PRECISION = "fp32"
