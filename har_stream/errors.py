"""One small tree of errors.

Every error a user can cause or fix is a ``HarStreamError``; the CLI and the HTTP server each turn them
into a message (and an exit code / HTTP status) in one place. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HarStreamError(Exception):
    """Base of every expected, user-facing error. ``str(err)`` is one line that says what to do."""

    http_status = 400
    exit_code = 2


class InputError(HarStreamError):
    """The input (file, URL, upload) is missing, unreadable or not a video."""

    http_status = 422
    exit_code = 3


class NotVideoError(InputError):
    """The input exists but holds no decodable video stream."""

    http_status = 415


class SourceUnreachableError(InputError):
    """A URL or camera could not be reached or resolved."""

    http_status = 502
    exit_code = 4


class ModelError(HarStreamError):
    """Unknown model, bad checkpoint, or labels that do not fit the model."""

    http_status = 400
    exit_code = 5


class WeightsError(HarStreamError):
    """Weights are missing, could not be fetched, or failed their hash check."""

    http_status = 503
    exit_code = 6


class WeightsMissingError(WeightsError):
    """Weights are not in the cache and cannot be downloaded now."""


class HashMismatchError(WeightsError):
    """A weights file's sha256 differs from the manifest: never loaded."""


class LabelsError(HarStreamError):
    """A label set is unknown, empty or malformed."""

    http_status = 400
    exit_code = 7


class ConfigError(HarStreamError):
    """Bad option values or configuration."""

    http_status = 400
    exit_code = 2


class OverloadedError(HarStreamError):
    """A bounded resource is full (too many peers, queue full)."""

    http_status = 429
    exit_code = 8


class InferenceStalledError(HarStreamError):
    """A model call ran past the watchdog's bound (``inference_stall_s``): its windows are given up on."""

    http_status = 503
    exit_code = 9


class BackendError(HarStreamError):
    """The inference backend (a Ray cluster, ``--backend ray``) is not installed, not reachable, or failed a call
    twice (har_stream/backends/)."""

    http_status = 503
    exit_code = 10
