"""Reading a JSON request body safely: bounded in size (aiohttp's ``client_max_size``: 413) and in depth.

Why a depth check before parsing: Python's JSON parser recurses once per nesting level and raises
``RecursionError`` (a 500, and a stack near its end) on ``[[[[...]]]]`` only a few kilobytes long. No request
of this API nests more than a few levels, so anything deeper than ``MAX_JSON_DEPTH`` is refused with 400 after
one flat scan of the text, before any parsing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .errors import BadRequestError

MAX_JSON_DEPTH = 32
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest (brackets inside strings do not count); no recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(text: str, hint: str) -> Any:
    """``text`` parsed; 400 with ``hint`` (what to send) when it is not JSON or nests too deeply."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BadRequestError(f"the JSON body nests {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted "
                              f"({hint})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise BadRequestError(f"the request body is not valid JSON (not JSON at all, or cut short: {err}); "
                              f"{hint}") from None


async def read_json(request: web.Request, hint: str) -> Any:
    """The request's JSON body (413 past ``client_max_size``, 400 when not UTF-8, not JSON or too deep)."""
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise BadRequestError(f"the request body is not UTF-8 text; {hint}") from None
    return parse_json(text, hint)
