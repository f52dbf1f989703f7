"""One place that turns errors into responses: a translated page for people, JSON for APIs.

An error answer discards the request's unit of work: nothing the request did before it failed is
committed.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from idp import db

log = logging.getLogger(__name__)

API_PREFIXES = ("/token", "/revoke", "/introspect", "/par", "/userinfo", "/jwks", "/.well-known",
                "/healthz", "/metrics")


def _wants_json() -> bool:
    return request.path.startswith(API_PREFIXES)


def page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", title=title, message=message, status=status), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(_e: CSRFError) -> tuple[str, int]:
        db.discard()
        return page(
            400,
            _("This form has expired"),
            _("For your safety the form could not be accepted. Go back, reload the page and try again."),
        )

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response | tuple[str, int]:
        db.discard()  # a request answered with an error changes nothing
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
        db.discard()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            resp = jsonify(error="server_error", error_description="internal error")
            resp.status_code = 500
            return resp
        return page(500, _("Something went wrong"), _("Please try again later."))

