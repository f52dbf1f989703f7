"""Registration of a citizen from the population registry (being written)."""

from __future__ import annotations

from flask import Blueprint, abort

bp = Blueprint("identity", __name__)


@bp.route("/register", methods=["GET", "POST"])
def register() -> str:
    abort(404)
