"""Finance routes (CONTRACT §5) and the finance web page.

``POST /v1/finance/reconciliations`` takes a statement of up to 256 MiB. The signature
middleware has already checked the signature over the headers (``STREAMED_BODIES``)
before any of the body was read; here the multipart body is read in chunks through a
hasher, the statement part goes to a temporary file (never memory), and the
``Content-Digest`` is compared when the body ends, before the statement is reconciled.

The page under ``/finance`` is for people: a session cookie from ``payhub finance login``
(``payhub.reconcile.session``), server-rendered HTML and plain forms.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tempfile
from datetime import date
from typing import IO, Any
from urllib.parse import urlencode

import structlog
from aiohttp import BodyPartReader, MultipartReader, StreamReader, web
from http_sf.compat import Dictionary

from payhub import keys
from payhub.api.middleware import PRINCIPAL, STATEMENT_LIMIT
from payhub.errors import FieldError, ProblemError
from payhub.reconcile import page, report, session
from payhub.reconcile.engine import Reconciler, RunRequest
from payhub.reconcile.formats import bank_account, formats, usual_format
from payhub.reconcile.resolve import RESOLUTIONS, resolve_exception
from payhub.store import reconciliation as store

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

FIELD_LIMIT = 256
PAGE_EXCEPTIONS = 500
"""Exceptions shown at once on the page; filters narrow them down."""
_DIGESTS = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}


class _DigestingContent:
    """``request.content`` seen through a hash of every body byte, each counted once.

    aiohttp's multipart reader pushes back what it read too far (``unread_data``); those
    bytes were hashed already and are skipped when they are read again.
    """

    def __init__(self, content: StreamReader, algorithm: str) -> None:
        self._content = content
        self.hash = _DIGESTS[algorithm]()
        self.size = 0
        self._rehashed = 0

    def _seen(self, data: bytes) -> bytes:
        skip = min(self._rehashed, len(data))
        self._rehashed -= skip
        fresh = data[skip:]
        self.hash.update(fresh)
        self.size += len(fresh)
        if self.size > STATEMENT_LIMIT:
            raise ProblemError("payload_too_large", f"the body is over {STATEMENT_LIMIT:,} bytes")
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._seen(await self._content.read(n))

    async def readline(self, *args: Any, **kwargs: Any) -> bytes:
        return self._seen(await self._content.readline(*args, **kwargs))

    async def readany(self) -> bytes:
        return self._seen(await self._content.readany())

    def at_eof(self) -> bool:
        return bool(self._content.at_eof())

    def unread_data(self, data: bytes) -> None:
        self._rehashed += len(data)
        self._content.unread_data(data)


def _expected_digest(header: str) -> tuple[str, bytes]:
    try:
        parsed = Dictionary()
        parsed.parse(header.encode())
    except Exception:
        raise ProblemError("digest_mismatch", "Content-Digest is not a structured field") from None
    for algorithm in ("sha-512", "sha-256"):
        item = parsed.get(algorithm)
        if item is not None and isinstance(item.value, bytes):
            return algorithm, item.value
    raise ProblemError("digest_mismatch", "Content-Digest needs sha-256 or sha-512")


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError("validation_failed", message, errors=[FieldError(field, message)])


async def _small_field(part: BodyPartReader) -> str:
    data = b""
    while chunk := await part.read_chunk(1024):
        data += chunk
        if len(data) > FIELD_LIMIT:
            raise _invalid(part.name or "?", "field too long")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise _invalid(part.name or "?", "not UTF-8") from None


async def _spool(part: BodyPartReader, target: IO[bytes]) -> None:
    """The statement to a temporary file, a chunk at a time: never whole in memory."""
    while chunk := await part.read_chunk(1 << 16):
        target.write(chunk)


@routes.post("/v1/finance/reconciliations")
async def create_reconciliation(request: web.Request) -> web.Response:
    """Multipart ``bank``, ``business_date``, ``statement`` (and optional ``format``)."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ProblemError("unsupported_media_type", "send multipart/form-data")
    algorithm, expected = _expected_digest(request.headers.get("Content-Digest", ""))
    content = _DigestingContent(request.content, algorithm)
    fields: dict[str, str] = {}
    with tempfile.TemporaryFile(prefix="payhub-statement-") as spool:
        got_statement = False
        try:
            reader = MultipartReader(request.headers, content)  # type: ignore[arg-type]
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise _invalid("statement", "nested multipart is not accepted")
                if part.name == "statement":
                    if got_statement:
                        raise _invalid("statement", "send one statement")
                    await _spool(part, spool)
                    got_statement = True
                elif part.name in ("bank", "business_date", "format"):
                    fields[part.name] = await _small_field(part)
                else:
                    await part.release()
            while await content.read(1 << 16):
                pass
        except (ValueError, AssertionError, RuntimeError) as exc:
            raise ProblemError(
                "malformed_request", f"the multipart body is malformed: {exc}"
            ) from exc
        if not hmac.compare_digest(content.hash.digest(), expected):
            raise ProblemError("digest_mismatch", "Content-Digest does not match the body")
        run_request = _run_request(request, fields, got_statement)
        spool.seek(0)
        run = await Reconciler(
            request.app[keys.ENGINE], request.app[keys.LEDGER], request.app[keys.CLOCK]
        ).run(run_request, spool)
    return web.json_response(report.public_run(run), status=201)


def _run_request(request: web.Request, fields: dict[str, str], got_statement: bool) -> RunRequest:
    settings = request.app[keys.SETTINGS].current
    errors = []
    bank = fields.get("bank", "")
    if bank not in settings.banks:
        errors.append(FieldError("bank", f"not a configured bank: {', '.join(settings.banks)}"))
    day: date | None = None
    try:
        day = date.fromisoformat(fields.get("business_date", ""))
    except ValueError:
        errors.append(FieldError("business_date", "a date YYYY-MM-DD"))
    if not got_statement:
        errors.append(FieldError("statement", "the statement file is required"))
    fmt = fields.get("format")
    if fmt is not None and fmt not in formats():
        errors.append(FieldError("format", f"one of {', '.join(formats())}"))
    if errors or day is None:
        raise ProblemError(
            "validation_failed", "the reconciliation request is invalid", errors=errors
        )
    if fmt is None:
        try:
            fmt = usual_format(settings.banks[bank].connector)
        except Exception:
            raise _invalid("format", "this bank has no usual format: give one") from None
    principal = request[PRINCIPAL].principal
    return RunRequest(bank, day, fmt, f"finance:{principal}", bank_account(settings.banks[bank]))


async def _run_or_404(request: web.Request, run_id: str) -> dict[str, Any]:
    async with request.app[keys.ENGINE].connect() as conn:
        run = await store.get_run(conn, run_id)
    if run is None:
        raise ProblemError("not_found", f"no reconciliation {run_id!r}")
    return run


@routes.get("/v1/finance/reconciliations/{id}")
async def get_reconciliation(request: web.Request) -> web.Response:
    run = await _run_or_404(request, request.match_info["id"])
    async with request.app[keys.ENGINE].connect() as conn:
        exceptions = await report.load_exceptions(conn, run["id"])
    return web.json_response({**report.public_run(run), "exceptions": exceptions})


async def _stream_csv(request: web.Request, run_id: str) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{run_id}.csv"',
        }
    )
    await response.prepare(request)
    async with request.app[keys.ENGINE].connect() as conn:
        buffer: list[str] = []
        async for line in report.csv_lines(store.report_rows(conn, run_id)):
            buffer.append(line)
            if len(buffer) >= 2000:
                await response.write("".join(buffer).encode())
                buffer = []
        await response.write("".join(buffer).encode())
    await response.write_eof()
    return response


@routes.get("/v1/finance/reconciliations/{id}/report.csv")
async def reconciliation_csv(request: web.Request) -> web.StreamResponse:
    run = await _run_or_404(request, request.match_info["id"])
    return await _stream_csv(request, run["id"])


def _resolution_body(raw: bytes) -> tuple[str, str]:
    try:
        body = json.loads(raw)
    except ValueError:
        raise ProblemError("malformed_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ProblemError("malformed_request", "the body is not a JSON object")
    errors = [FieldError(k, "unknown field") for k in body if k not in ("resolution", "note")]
    resolution, note = body.get("resolution"), body.get("note")
    if not isinstance(resolution, str) or not 1 <= len(resolution.strip()) <= 64:
        errors.append(FieldError("resolution", "1–64 characters, e.g. " + ", ".join(RESOLUTIONS)))
    if not isinstance(note, str) or not 1 <= len(note.strip()) <= 2000:
        errors.append(FieldError("note", "why, in 1–2000 characters"))
    if errors:
        raise ProblemError("validation_failed", "the resolution is invalid", errors=errors)
    assert isinstance(resolution, str) and isinstance(note, str)
    return resolution.strip(), note.strip()


@routes.post("/v1/finance/exceptions/{id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    from payhub.api.middleware import BODY

    resolution, note = _resolution_body(request[BODY])
    resolved = await resolve_exception(
        request.app[keys.LEDGER],
        request.match_info["id"],
        resolution=resolution,
        note=note,
        user=request[PRINCIPAL].principal,
    )
    return web.json_response(report.public_exception(resolved))


# -- the finance page -----------------------------------------------------------------------


def _session(request: web.Request) -> tuple[session.Session, str] | None:
    cookie = request.cookies.get(session.COOKIE)
    if not cookie:
        return None
    try:
        found = session.verify(
            request.app[keys.SETTINGS].current,
            cookie,
            purpose="session",
            now=request.app[keys.CLOCK](),
        )
    except session.SessionInvalid:
        return None
    return found, cookie


def _signed_out(request: web.Request) -> web.Response:
    config = request.app[keys.SETTINGS].current.config_path
    return web.Response(
        status=401, text=page.signed_out(str(config)), content_type="text/html", charset="utf-8"
    )


@routes.get("/finance/login")
async def login(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS].current
    now = request.app[keys.CLOCK]()
    try:
        link = session.verify(settings, request.query.get("token", ""), purpose="login", now=now)
    except session.SessionInvalid:
        return _signed_out(request)
    nonces = request.app[keys.NONCES]
    expires = now.fromtimestamp(link.expires, tz=now.tzinfo)
    if not await nonces.claim(f"finance-login:{link.user}"[:64], link.nonce, expires):
        return _signed_out(request)  # a link works once
    cookie = session.session_token(settings, link.user, now=now)
    response = web.HTTPSeeOther("/finance")
    response.set_cookie(
        session.COOKIE,
        cookie,
        max_age=int(session.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="Strict",
        path="/finance",
        secure=settings.public_url.startswith("https://"),
    )
    log.info("finance.page_login", finance_user=link.user)
    raise response


@routes.get("/finance/logout")
async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/finance")
    response.del_cookie(session.COOKIE, path="/finance")
    raise response


@routes.get("/finance")
async def finance_page(request: web.Request) -> web.Response:
    signed_in = _session(request)
    if signed_in is None:
        return _signed_out(request)
    user, cookie = signed_in[0].user, signed_in[1]
    query = request.query
    filters = {
        "bank": query.get("bank") or None,
        "kind": query.get("class") or None,
        "status": query.get("status", "open") or None,
        "run_id": query.get("run") or None,
    }
    async with request.app[keys.ENGINE].connect() as conn:
        runs = [report.public_run(r) for r in await store.list_runs(conn, limit=60)]
        rows = await store.list_exceptions(
            conn,
            bank=filters["bank"],
            kind=filters["kind"],
            status=filters["status"],
            run_id=filters["run_id"],
            limit=PAGE_EXCEPTIONS,
        )
    html = page.render(
        user=user,
        runs=runs,
        exceptions=[report.public_exception(r) for r in rows],
        filters=filters,
        banks=sorted(request.app[keys.SETTINGS].current.banks),
        form_token=session.form_token(cookie),
        notice=query.get("notice"),
    )
    return web.Response(text=html, content_type="text/html", charset="utf-8")


@routes.get("/finance/runs/{run}/report.csv")
async def page_csv(request: web.Request) -> web.StreamResponse:
    if _session(request) is None:
        return _signed_out(request)
    run = await _run_or_404(request, request.match_info["run"])
    return await _stream_csv(request, run["id"])


@routes.post("/finance/exceptions/{exception}/resolve")
async def page_resolve(request: web.Request) -> web.Response:
    signed_in = _session(request)
    if signed_in is None:
        return _signed_out(request)
    form = await request.post()
    token = str(form.get("form_token", ""))
    if not hmac.compare_digest(token, session.form_token(signed_in[1])):
        raise ProblemError("forbidden", "the form is stale or from another site; reload the page")
    back = str(form.get("back", "")) or "/finance"
    if not back.startswith("/finance"):
        back = "/finance"
    resolution = str(form.get("resolution", "")).strip()
    note = str(form.get("note", "")).strip()
    exception_id = request.match_info["exception"]
    if not resolution or not note:
        notice = f"{exception_id}: give a resolution and a note saying why"
    else:
        try:
            await resolve_exception(
                request.app[keys.LEDGER],
                exception_id,
                resolution=resolution[:64],
                note=note[:2000],
                user=signed_in[0].user,
            )
            notice = f"{exception_id} resolved"
        except ProblemError as problem:
            notice = f"{exception_id}: {problem.detail}"
    separator = "&" if "?" in back else "?"
    raise web.HTTPSeeOther(f"{back}{separator}{urlencode({'notice': notice})}")
