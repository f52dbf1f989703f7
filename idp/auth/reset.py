"""The password-reset link, sent to the citizen's verified channels: by the citizen's own request
("Forgot your password?") or by a helpdesk case, never shown to anyone else."""

from __future__ import annotations

from flask import current_app, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from idp import codes, outbox
from idp.models import Citizen


def send_reset_link(session: Session, citizen: Citizen) -> bool:
    """Queue a reset link on every verified channel; False when the citizen has none."""
    if not (citizen.email_verified or citizen.phone_verified):
        return False
    token = codes.issue_link(codes.PASSWORD_RESET, str(citizen.id))
    link = current_app.config["IDP"].issuer + url_for("auth.reset_password", token=token)
    with force_locale(citizen.locale):
        outbox.notify_citizen(
            session, citizen, _("SatuID: reset your password"),
            _("Someone asked to reset the password of your SatuID account. To choose a new "
              "password, open this link within 15 minutes: %(link)s\nIf this was not you, "
              "ignore this message; your password has not changed.", link=link),
        )
    return True
