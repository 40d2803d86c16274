"""One engine for all tasks: training, evaluation, metrics, checkpoints."""
