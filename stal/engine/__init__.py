"""Training loop, checkpoints, evaluation during and after training."""
