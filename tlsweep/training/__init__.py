"""One training run in plain PyTorch (never Ray): config, loop, backbones, optimizers and schedules, evaluation, checkpoints, prediction, run outputs."""
