"""har-stream: real-time human action recognition engine.

The engine knows nothing of HTTP: sources feed frames, models turn windows of frames into labels,
sinks receive typed events. The server (``server/``) and the CLI are thin front doors onto it.
"""

__version__ = "0.1.0"
