"""One place that turns errors into responses: a translated page for people, JSON for APIs.

An error answer discards the request's unit of work: nothing the request did before it failed is
committed.
"""

from __future__ import annotations

import logging

import psycopg
import redis
import sqlalchemy.exc
from flask import Flask, Response, jsonify, make_response, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from idp import db

log = logging.getLogger(__name__)

API_PREFIXES = ("/token", "/revoke", "/introspect", "/par", "/userinfo", "/jwks", "/.well-known",
                "/healthz", "/metrics")


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIXES)


def page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message, status=status), status


#: Failures of a dependency, not of the request: PostgreSQL or Redis unreachable, a pool exhausted,
#: SQLite's file locked too long. Answered 503 with Retry-After, never 500.
#: A Redis Cluster adds: the cluster down (CLUSTERDOWN, MASTERDOWN), a key's slot without a master,
#: and redirections that never settle while slots move (ClusterError, "TTL exhausted"). No node
#: reachable at all comes from redis-py as a bare RedisClusterException, the base of its usage errors
#: too (a command across slots, a bug, must stay a 500): ``idp.store`` raises it as ConnectionError.
UNAVAILABLE: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError, redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError, redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError,
)
RETRY_AFTER = "30"


class Busy(Exception):
    """This process has no capacity left for the request's costly work (argon2 hashing) within the
    time a request may wait for it. Nothing about the request is wrong: answered 503 with a short
    Retry-After, as an outage is, and the work queued behind it finishes meanwhile."""


BUSY_RETRY_AFTER = "5"


def unavailable(title: str | None = None, message: str | None = None,
                retry_after: str = RETRY_AFTER) -> Response:
    """503 while PostgreSQL or Redis cannot be reached (or, with its own page, while ``Busy``):
    OAuth JSON at the API, a page elsewhere."""
    if _wants_json():
        response = jsonify(error="temporarily_unavailable",
                           error_description="The service is temporarily unavailable; retry later.")
        response.headers["Cache-Control"] = "no-store"
    else:
        response = make_response(page(
            503, title or _("SatuID is temporarily unavailable"),
            message or _("We could not reach part of our system. Your data is safe and nothing was "
                         "changed. Please try again in a minute.")))
    response.status_code = 503
    response.headers["Retry-After"] = retry_after
    return response


def _route() -> str:
    """The request's route pattern for a log line, not its path: a path can carry a secret (the
    token of a password-reset or enrolment link)."""
    return request.url_rule.rule if request.url_rule is not None else "(no route)"


def outage(e: Exception) -> Response:
    """Log a dependency failure briefly (no secrets, no request values) and answer 503."""
    discard_quietly()
    log.warning("dependency unavailable on %s %s: %s", request.method, _route(), type(e).__name__)
    return unavailable()


def busy(e: Busy) -> Response:
    """Log that work queued too long (no request values) and answer 503."""
    discard_quietly()
    log.warning("busy on %s %s: %s", request.method, _route(), e)
    return unavailable(_("SatuID is busy right now"),
                       _("Many people are using SatuID at this moment. Nothing was changed. Please "
                         "try again in a few seconds."), retry_after=BUSY_RETRY_AFTER)


def discard_quietly() -> None:
    try:
        db.discard()
    except Exception:  # the connection is gone with the database; nothing was committed
        log.debug("could not roll back the unit of work", exc_info=True)


def init_app(app: Flask) -> None:
    for kind in UNAVAILABLE:
        app.register_error_handler(kind, outage)
    app.register_error_handler(Busy, busy)

    @app.errorhandler(CSRFError)
    def _csrf(_e: CSRFError) -> tuple[str, int]:
        discard_quietly()
        return page(
            400,
            _("This form has expired"),
            _("For your safety the form could not be accepted. Go back, reload the page and try again."),
        )

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response | tuple[str, int]:
        # An error raised while the response was finalised (the request's commit, in
        # ``after_request``) arrives wrapped in a 500 instead of through its own handler.
        if isinstance(e, InternalServerError) and isinstance(e.original_exception, UNAVAILABLE):
            return outage(e.original_exception)
        discard_quietly()  # a request answered with an error changes nothing
        if _wants_json():
            name = "invalid_request" if e.code == 400 else (e.name or "error").lower().replace(" ", "_")
            resp = jsonify(error=name, error_description=e.description or "")
            resp.status_code = e.code or 500
            return resp
        titles = {
            400: _("The request could not be understood"),
            403: _("Access denied"),
            404: _("Page not found"),
            405: _("This action is not allowed here"),
            413: _("The request is too large"),
            429: _("Too many attempts"),
        }
        messages = {
            400: _("Something in the request was missing or not valid. Go back and try again."),
            403: _("You do not have access to this page."),
            404: _("The page you asked for does not exist."),
            405: _("This page cannot be used this way."),
            413: _("The request is too large."),
            429: _("Please wait a few minutes before trying again."),
        }
        code = e.code or 500
        return page(code, titles.get(code, _("Something went wrong")),
                    messages.get(code, _("Please try again later.")))

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response | tuple[str, int]:
        if isinstance(e, HTTPException):
            return _http(e)
        if isinstance(e, UNAVAILABLE):
            return outage(e)
        if isinstance(e, Busy):
            return busy(e)
        discard_quietly()
        log.exception("unhandled error on %s %s", request.method, _route())
        if _wants_json():
            resp = jsonify(error="server_error", error_description="internal error")
            resp.status_code = 500
            return resp
        return page(500, _("Something went wrong"), _("Please try again later."))

