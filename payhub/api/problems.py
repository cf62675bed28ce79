"""RFC 9457 problem documents: the only shape of an error answer."""

from __future__ import annotations

import json

from aiohttp import web

from payhub.errors import ProblemError

PROBLEM_JSON = "application/problem+json"


def problem_response(problem: ProblemError) -> web.Response:
    response = web.Response(
        status=problem.status,
        body=json.dumps(problem.to_dict(), ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def json_response(
    data: object, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(),
        content_type="application/json",
        headers=headers,
    )
