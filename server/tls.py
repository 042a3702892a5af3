"""``--tls-cert/--tls-key``: serve https (and wss) directly, because browsers give a page on another machine
the camera only on a secure origin, and a token sent over plain http can be read on the way.

Renewals without a restart: a server runs for weeks, and Let's Encrypt certificates last 90 days (renewed
after 60). At every TLS handshake (the context's ``sni_callback``, called with or without SNI) the two files'
stat stamps are compared with those last loaded; when they changed, the chain is loaded again into the SAME
``SSLContext`` (so every later connection gets it) and the connection being made is handed a context with it
too. No task and no timer: two ``stat`` calls per handshake cost microseconds against its milliseconds, and a
renewal is seen at the first connection after it. A pair that does not load (a renewal half written: the new
certificate beside the old key) leaves the old certificate in use, logged once per change, and is tried again
at the next handshake.
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from har_stream.errors import ConfigError

from .config import ServerConfig

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int], ...]  # per file: (inode, size, mtime in ns)


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None without a certificate; a file that cannot be used fails the start.
    The context reloads its certificate when the files change (see the module's docstring)."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = _new_context()
    try:
        context.load_cert_chain(certfile=config.tls_cert, keyfile=config.tls_key)
    except FileNotFoundError as err:
        raise ConfigError(f"TLS file {err.filename or config.tls_cert} does not exist; give --tls-cert and "
                          "--tls-key as PEM files") from None
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(f"could not use the TLS certificate {config.tls_cert} with the key {config.tls_key} "
                          f"({err}); both must be PEM, the key unencrypted and matching the certificate") from None
    context.sni_callback = CertificateReloader(context, Path(config.tls_cert), Path(config.tls_key))
    return context


def _new_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class CertificateReloader:
    """The ``sni_callback`` that loads a renewed certificate chain into ``context`` (see the module)."""

    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path) -> None:
        self.context = context
        self.cert = cert
        self.key = key
        self._loaded = self._stamp()
        self._refused: Stamp | None = None  # the last stamp that did not load: logged once, not every handshake

    def _stamp(self) -> Stamp | None:
        try:
            return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in map(os.stat, (self.cert, self.key)))
        except OSError:
            return None  # mid-swap (a file briefly missing): try again at the next handshake

    def __call__(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        stamp = self._stamp()
        if stamp is None or stamp == self._loaded or stamp == self._refused:
            return None
        try:
            fresh = _new_context()  # this connection's own copy was taken already: it gets this one
            fresh.load_cert_chain(certfile=self.cert, keyfile=self.key)
            self.context.load_cert_chain(certfile=self.cert, keyfile=self.key)  # every later connection
        except (ssl.SSLError, OSError) as err:
            self._refused = stamp
            log.warning("the TLS files %s / %s changed but do not load (%s); still serving the previous "
                        "certificate, trying again at the next connection after they change", self.cert,
                        self.key, err)
            return None
        self._loaded, self._refused = stamp, None
        connection.context = fresh
        log.info("TLS certificate %s reloaded: new connections get it", self.cert)
        return None
