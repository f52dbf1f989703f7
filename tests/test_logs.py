"""Secrets never reach the logs."""

from __future__ import annotations

import logging

import pytest

from idp.logs import RedactingFilter, redact


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /password/reset/AbC-123_xyz HTTP/1.1", "AbC-123_xyz"),
        ("GET /cb?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj HTTP/1.1", "SplxlOBeZQQYbYS6WxSbIA"),
        ("POST /end-session?id_token_hint=eyJhbGciOi.eyJzdWIi.sig&state=x", "eyJhbGciOi"),
        ("refresh_token=8xLOxBtZp8&grant_type=refresh_token", "8xLOxBtZp8"),
        ("GET /authorize?client_id=p&login_hint=3171065708900001&scope=openid", "3171065708900001"),
        ("GET /authorize?login_hint=siti%40example.id HTTP/1.1", "siti%40example.id"),
        ("GET /login?next=/account/3171065708900001 HTTP/1.1", "3171065708900001"),
    ],
)
def test_redact_removes_secrets_and_keeps_the_rest(line: str, secret: str) -> None:
    cleaned = redact(line)
    assert secret not in cleaned and ("[redacted]" in cleaned or "[nik]" in cleaned)


def test_filter_redacts_formatted_arguments(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("idp.test")
    log.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="idp.test"):
        log.info("error on %s", "/password/reset/topsecretlink")
    assert "topsecretlink" not in caplog.text and "[redacted]" in caplog.text
