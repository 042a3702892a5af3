"""The aioice loopback patch: offer 127.0.0.1 as the only host ICE candidate.

aioice skips loopback addresses when gathering candidates, so a peer on the same machine (a test client,
a local headless browser, a machine without network) could never connect. The patch is process-wide, so it
is applied as a context that restores what it replaced, and nests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aioice.ice


def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return ["127.0.0.1"] if use_ipv4 else []


@contextlib.contextmanager
def ice_loopback() -> Iterator[None]:
    """While active, every new ICE agent in this process gathers 127.0.0.1 only."""
    previous = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _loopback_only
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = previous
