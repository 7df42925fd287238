"""tlsweep: when does transfer learning beat training from scratch? Sweeps on Ray Tune, statistics from Parquet."""

__version__ = "0.1.0"
