"""The audit log's public face: its latest signed checkpoint, older ones, its verifier key and
consistency proofs between checkpoints, so that outside monitors can keep copies of every tree head
and check that each extends the last (Certificate Transparency's model, RFC 9162 §4).

Only hashes and signed tree heads are public; events themselves never leave SatuID except to the
citizen they are about (``/account/activity/<id>/proof``).

Each answer is public and cacheable, but each one the server computes is a query (a consistency
proof, a walk of the tree), so one address gets ``IDP_AUDIT_RATE_LIMIT`` a minute on Redis: ample
for a monitor that polls the newest checkpoint and asks for one proof per new one. The embedded
default does not count: there each count would be a write, dearer than the read it guards.
"""

from __future__ import annotations

import logging
import math
import time

from flask import Blueprint, Response, current_app, jsonify, request
from redis.exceptions import RedisError

from idp import audit
from idp.auth import lockout
from idp.db import get_session
from idp.store import RedisStore, get_store

log = logging.getLogger(__name__)
_warned_at = -math.inf

bp = Blueprint("transparency", __name__, url_prefix="/audit")


@bp.before_request
def _limit() -> tuple[Response, int] | None:
    limit: int = current_app.config["IDP"].audit_rate_limit
    if limit <= 0 or not isinstance(get_store(), RedisStore):
        return None
    try:
        allowed = lockout.ip_allowed("audit", limit)
    except RedisError as e:
        # The log's public face stays up in an outage of the store that counts: it matters most
        # when something is wrong. Only the limit is missing meanwhile.
        global _warned_at
        if time.monotonic() - _warned_at > 60:  # once a minute, not once a request
            _warned_at = time.monotonic()
            log.warning("the audit endpoints are not rate limited while the store is down (%s)",
                        type(e).__name__)
        return None
    if allowed:
        return None
    response, status = _error("too many requests from this address; try again next minute", 429,
                              "too_many_requests")
    response.headers["Retry-After"] = str(60 - int(time.time()) % 60)
    response.headers["Cache-Control"] = "no-store"  # this address's refusal, not the log's answer
    return response, status


def _text(body: str, max_age: int) -> Response:
    return Response(body, mimetype="text/plain", headers={
        "Cache-Control": f"public, max-age={max_age}", "Access-Control-Allow-Origin": "*"})


def _error(description: str, status: int, error: str = "invalid_request") -> tuple[Response, int]:
    response = jsonify(error=error, error_description=description)
    response.headers["Access-Control-Allow-Origin"] = "*"  # a monitor in a browser reads why
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
