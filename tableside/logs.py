"""structlog JSON logs. Ids (table, group, member, order) are bound where they are known; tokens,
QR secrets and passwords are never logged: HTTP access lines go through ``log_request`` (the tornado
Application's ``log_function``) with secret query parameters and the QR secret in ``/q/`` paths redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from types import TracebackType
from typing import Any
from urllib.parse import unquote_plus

import structlog
import tornado.httputil
import tornado.web

from tableside.storage.interface import StorageUnavailable


def processors(*, json: bool = True) -> list[structlog.typing.Processor]:
    """The production chain: one JSON object per line (or console rendering for humans)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=lvl)
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    structlog.configure(
        processors=processors(json=json),
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


# -- access log -------------------------------------------------------------------------------------------

REDACTED = "[redacted]"
# Query parameters whose value is a credential: the name contains one of these (case-insensitive).
_SECRET_PARAM_PARTS = ("token", "qr", "pass", "pwd", "secret", "key", "auth", "session", "sig", "code", "email",
                       "phone", "line_id")
# What a printed QR code opens: /q/{table_id}/{qr_secret}. The table id is kept, the secret is not.
_QR_PATH = re.compile(r"^(/q/[^/?]*/)[^/?]*")
# A guest session id in the path (GET /api/guest/session/{session_id}); ``/api/guest/session/store`` is kept.
# (The id's other carriers, the cookie and the X-Guest-Session header, are never logged.)
_GUEST_PATH = re.compile(r"^(/api/guest/session/)(?!store(?:$|[/?]))[^/?]+")
_MAX_LOGGED = 512

access_log = structlog.get_logger("tableside.access")
_app_log = structlog.get_logger("tableside.server")


def redact_path(path: str) -> str:
    path = _GUEST_PATH.sub(lambda m: m.group(1) + REDACTED, path)
    return _QR_PATH.sub(lambda m: m.group(1) + REDACTED, path)[:_MAX_LOGGED]


def redact_query(query: str) -> str:
    """The query string with the value of every secret-looking parameter replaced (names kept)."""
    parts = []
    for pair in query.split("&"):
        name, sep, _value = pair.partition("=")
        if sep and any(p in unquote_plus(name).lower() for p in _SECRET_PARAM_PARTS):
            pair = f"{name}={REDACTED}"
        parts.append(pair)
    return "&".join(parts)[:_MAX_LOGGED]


def request_summary(request: tornado.httputil.HTTPServerRequest) -> str:
    query = f"?{redact_query(request.query)}" if request.query else ""
    return f"{request.method} {redact_path(request.path)}{query} ({request.remote_ip})"


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The Application's ``log_function``: one JSON access line per request, secrets redacted."""
    status = handler.get_status()
    request = handler.request
    fields: dict[str, Any] = {
        "method": request.method,
        "path": redact_path(request.path),
        "status": status,
        "duration_ms": round(request.request_time() * 1000.0, 2),
        "ip": request.remote_ip,
    }
    if request.query:
        fields["query"] = redact_query(request.query)
    if status < 400:
        access_log.info("request", **fields)
    elif status < 500 or status == 503:
        # 4xx is the client's doing; 503 is deliberate load shedding (the node is full). Neither is a
        # server fault an operator is paged for; other 5xx are.
        access_log.warning("request", **fields)
    else:
        access_log.error("request", **fields)


class RedactedRequestLogging(tornado.web.RequestHandler):
    """Mixin for handlers: tornado's own warning and error lines name the request without its secrets
    (no query-string tokens, no QR secret, no headers: tornado would log the request's repr, cookies and
    Authorization included)."""

    def _request_summary(self) -> str:
        return request_summary(self.request)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, StorageUnavailable):
            self.set_status(503)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.set_header("Retry-After", "1")
            self.finish(json.dumps({"error": "unavailable", "message": "the database is unavailable; retry shortly"}))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)  # a warning naming _request_summary(), no traceback
            return
        if isinstance(value, StorageUnavailable):  # an outage, answered 503: one line, no traceback
            _app_log.warning("storage_unavailable", request=self._request_summary(), error=str(value))
            return
        _app_log.error("uncaught_exception", request=self._request_summary(), exc_info=(typ, value, tb))
