"""Training: the Lightning modules, the one engine for every task, EMA, QAT and the evaluation of checkpoints."""
