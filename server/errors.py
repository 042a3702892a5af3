"""The one place where errors become HTTP responses: always ``{"error": "<one line>"}`` with a 4xx/5xx status.

``HarStreamError`` children carry their own ``http_status``; aiohttp's own HTTP errors (404, 405, 413) get
the same JSON shape; anything else is a bug: logged with its traceback, answered 500 without internals.
"""

from __future__ import annotations

import logging

from aiohttp import web

from har_stream.errors import HarStreamError

log = logging.getLogger(__name__)


class BadRequestError(HarStreamError):
    """The request itself is wrong: not JSON, missing fields, a malformed or unusable SDP offer."""

    http_status = 400


class NotFoundError(HarStreamError):
    """No such job (or file of a job)."""

    http_status = 404


class PayloadTooLargeError(HarStreamError):
    """An upload larger than ``max_upload_mb``: refused while it streams in, not after."""

    http_status = 413


class NotReadyError(HarStreamError):
    """A model exists but is still downloading or loading; asking again later will work."""

    http_status = 503


class UnauthorizedError(HarStreamError):
    """A protected route without the server's token (server/auth.py); ``http_headers`` go on the reply."""

    http_status = 401

    def __init__(self, message: str, http_headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.http_headers = http_headers or {}


class ForbiddenError(HarStreamError):
    """A request another site's page made (Origin) or sent to a name this server is not (Host)."""

    http_status = 403


class TooManyAttemptsError(UnauthorizedError):
    """Too many wrong tokens from one address: wait ``Retry-After`` seconds."""

    http_status = 429


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HarStreamError as err:
        status = err.http_status if 400 <= err.http_status < 600 else 500
        log.info("%s %s -> %d: %s", request.method, request.path, status, err)
        response = error_response(status, str(err))
        response.headers.update(getattr(err, "http_headers", None) or {})
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not errors
        return error_response(exc.status, _http_message(request, exc))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal server error; the server log has the details")


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return (f"nothing at {request.path}; the API lives under /api (health, models, status, webrtc/offer, "
                "jobs, streams, events) and /predict")
    if exc.status == 405:
        return f"{request.method} is not allowed on {request.path}; see the API description in the README"
    if exc.status == 413:
        return "request body too large; an offer is a few kilobytes of SDP, a job's JSON a few hundred bytes"
    return exc.reason or f"HTTP {exc.status}"
