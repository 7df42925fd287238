"""Ray Tune and Optuna: the only package that imports them. Runs a sweep: searchers, trainable, recorder, ASHA, node-loss handling, progress."""
