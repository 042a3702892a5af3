"""Where models run: in this process (``local``) or on a Ray Serve cluster (``ray``); see ``base.py``."""

from .base import BACKENDS, BackendConfig, InferenceBackend, LocalBackend, ModelOptions, make_backend

__all__ = ["BACKENDS", "BackendConfig", "InferenceBackend", "LocalBackend", "ModelOptions", "make_backend"]
