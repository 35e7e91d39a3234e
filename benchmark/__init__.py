"""qafe-bench: the harness.

Protocols (splits, subject-wise folds, clip sampling), metrics, losses, the data
pipeline (video IO, face and landmark backends, landmark heatmap volumes,
prepared datasets, the synthetic generator), the training and evaluation
engine, run records, table building, report rendering and the command line.

Methods live in the sibling package :mod:`methods`; the contract between the
two is :class:`benchmark.api.Method`.
"""

__version__ = "0.1.0"
