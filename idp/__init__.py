"""SatuID: national digital identity provider (OpenID Connect), keyed on the NIK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app (``idp.app`` is the composition root). Nothing runs at import."""
    from idp.app import create_app as build

    return build(test_config)
