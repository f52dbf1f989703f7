"""The audit log's public face: its latest signed checkpoint, older ones, its verifier key and
consistency proofs between checkpoints, so that outside monitors can keep copies of every tree head
and check that each extends the last (Certificate Transparency's model, RFC 9162 §4).

Only hashes and signed tree heads are public; events themselves never leave SatuID except to the
citizen they are about (``/account/activity/<id>/proof``).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from idp import audit
from idp.db import get_session

bp = Blueprint("transparency", __name__, url_prefix="/audit")


def _text(body: str, max_age: int) -> Response:
    return Response(body, mimetype="text/plain", headers={
        "Cache-Control": f"public, max-age={max_age}", "Access-Control-Allow-Origin": "*"})


def _error(description: str, status: int) -> tuple[Response, int]:
    response = jsonify(error="invalid_request", error_description=description)
    return response, status


@bp.get("/checkpoint")
def latest() -> Response | tuple[Response, int]:
    """The newest signed checkpoint (a C2SP signed note)."""
    cp = audit.checkpoint_at(get_session())
    if cp is None:
        return _error("the log has no checkpoint yet", 404)
    return _text(cp.note, 5)


@bp.get("/checkpoint/<int:size>")
def at_size(size: int) -> Response | tuple[Response, int]:
    """The checkpoint of a given tree size: it never changes, so caches may keep it."""
    cp = audit.checkpoint_at(get_session(), size) if 0 < size < 2**62 else None
    if cp is None:
        return _error("no checkpoint of that size", 404)
    return _text(cp.note, 86400)


@bp.get("/key")
def key() -> Response | tuple[Response, int]:
    """The key every checkpoint is signed with, for monitors to pin."""
    key = audit.trusted_key(get_session())
    if key is None:
        return _error("the log has no checkpoint yet", 404)
    return _text(key + "\n", 300)


@bp.get("/consistency")
def consistency() -> Response | tuple[Response, int]:
    """``?first=M&second=N``: the proof that the tree of checkpoint M is a prefix of checkpoint N's
    (N defaults to the newest)."""
    first = request.args.get("first", type=int)
    second = request.args.get("second", type=int)
    session = get_session()
    if first is None or not 0 < first < 2**62 or (second is not None and not 0 < second < 2**62):
        return _error("first (and second, if given) must be checkpoint sizes", 400)
    old, new = audit.checkpoint_at(session, first), audit.checkpoint_at(session, second)
    if old is None or new is None:
        return _error("both sizes must be those of published checkpoints", 404)
    if old.tree_size > new.tree_size:
        return _error("first must not be larger than second", 400)
    try:
        response = jsonify(audit.consistency_json(session, old, new))
    except LookupError:  # part of the tree is archived (docs/audit.md)
        return _error("that part of the log is archived; ask the operator for its archive", 410)
    response.headers["Cache-Control"] = "public, max-age=86400"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
