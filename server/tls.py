"""``--tls-cert/--tls-key``: serve https (and wss) directly, because browsers give a page on another machine
the camera only on a secure origin, and a token sent over plain http can be read on the way."""

from __future__ import annotations

import ssl

from har_stream.errors import ConfigError

from .config import ServerConfig


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None without a certificate; a file that cannot be used fails the start."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=config.tls_cert, keyfile=config.tls_key)
    except FileNotFoundError as err:
        raise ConfigError(f"TLS file {err.filename or config.tls_cert} does not exist; give --tls-cert and "
                          "--tls-key as PEM files") from None
    except (ssl.SSLError, OSError) as err:
        raise ConfigError(f"could not use the TLS certificate {config.tls_cert} with the key {config.tls_key} "
                          f"({err}); both must be PEM, the key unencrypted and matching the certificate") from None
    return context
