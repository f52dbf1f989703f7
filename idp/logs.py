"""Keep secrets out of logs: one-time links, codes and tokens are redacted from every logged URL.

Used by gunicorn's access log (``gunicorn.conf.py`` sets ``logger_class``) and as a filter on the
application's own loggers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

_SECRET_PATH = re.compile(r"(/password/reset/|/register/verify/|/account/close/cancel/"
                          r"|/account/not-me/contact/|/account/security/waiting/"
                          r"|/helpdesk-change/cancel/|/helpdesk/enrol/)"
                          r"[^/?#\s\"]+")
_SECRET_PARAM = re.compile(
    r"((?:^|[?&;\s])(?:code|token|refresh_token|access_token|id_token_hint|logout_token|"
    r"client_secret|password|client_assertion|request|otp|login_hint|nik)=)[^&\s\"]*",
    re.IGNORECASE,
)


_NIK = re.compile(r"(?<!\d)\d{16}(?!\d)")  # a NIK anywhere in a logged line


def redact(text: str) -> str:
    text = _SECRET_PATH.sub(r"\1[redacted]", text)
    text = _SECRET_PARAM.sub(r"\1[redacted]", text)
    return _NIK.sub("[nik]", text)


class RedactingLogger(Logger):
    """gunicorn's logger with the request line, query and referrer redacted."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "f"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        record.msg = redact(str(record.msg))
        return True


def init_app(app: Any) -> None:
    redacting = RedactingFilter()
    for name in ("idp", "werkzeug", "authlib", "gunicorn.error"):
        logging.getLogger(name).addFilter(redacting)
    app.logger.addFilter(redacting)
