"""Errors raised by qafe-bench.

Every error names the item at fault (a file, a video id, a CSV row, a subject)
and, where there is one, the fix. The command line prints them without a
traceback; anything already computed (prepared videos, finished runs) is kept.
"""

from __future__ import annotations


class QafeBenchError(Exception):
    """Base class of every error qafe-bench raises on purpose."""


class DataError(QafeBenchError):
    """Bad input data: a missing or corrupt file, a malformed CSV, a bad label."""


class CorruptVideoError(DataError):
    """A video (file or frame folder) cannot be decoded, or decodes to no frames."""


class NoFaceError(DataError):
    """No face was found in any frame of a video."""


class LabelError(DataError):
    """A label is missing, not a number, or outside the dataset card's range."""


class SubjectLeakError(DataError):
    """The same subject appears in the training and the test partition."""


class ManifestError(DataError):
    """A prepared dataset is missing, incomplete, or of another format version."""


class BackendUnavailableError(QafeBenchError):
    """A face/landmark backend cannot run here (package or model files absent)."""


class CheckpointError(QafeBenchError):
    """A checkpoint file is missing, unsafe to unpickle, or does not fit the model."""


class UnknownMethodError(QafeBenchError, KeyError):
    """No method is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class ConfigError(QafeBenchError):
    """A run or table configuration is invalid (unknown option, bad value)."""


class MissingWeightsError(ConfigError):
    """A method's from-scratch policy refuses to train without one of its released files
    (:class:`benchmark.api.WeightsAssumption` with ``policy="refuse"``); the message names the
    file, where it comes from and the ``--set`` that trains anyway. Tables show the row as refused."""


class DivergedError(QafeBenchError):
    """Training produced a non-finite loss or prediction (the run diverged)."""
