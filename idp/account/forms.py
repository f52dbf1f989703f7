"""The account pages' forms (Flask-WTF: CSRF on every form). Messages are English msgids."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from idp.identity import passwords

TIME_ZONES = [("", _l("From my NIK's province")),
              ("Asia/Jakarta", _l("WIB — Western Indonesia (UTC+7)")),
              ("Asia/Makassar", _l("WITA — Central Indonesia (UTC+8)")),
              ("Asia/Jayapura", _l("WIT — Eastern Indonesia (UTC+9)"))]
LANGUAGES = [("id", "Bahasa Indonesia"), ("en", "English")]


def _current_password() -> PasswordField:
    return PasswordField(_l("Your current password"),
                         validators=[DataRequired(message=_l("Enter your current password.")),
                                     Length(max=passwords.MAX_LENGTH)])


class PasswordChangeForm(FlaskForm):
    current = _current_password()
    password = PasswordField(_l("New password"),
                             validators=[DataRequired(message=_l("Choose a password.")),
                                         Length(max=passwords.MAX_LENGTH)])
    confirm = PasswordField(_l("Repeat the new password"),
                            validators=[DataRequired(message=_l("Repeat the password.")),
                                        EqualTo("password",
                                                message=_l("The two passwords are not the same."))])


class EmailChangeForm(FlaskForm):
    email = EmailField(_l("New email address"),
                       validators=[DataRequired(message=_l("Enter an email address.")), Length(max=255)])
    current = _current_password()


class EmailCodeForm(FlaskForm):
    email = HiddenField(validators=[Length(max=255)])
    code = StringField(_l("Code"), validators=[DataRequired(message=_l("Enter the code.")), Length(max=20)],
                       render_kw={"inputmode": "numeric"})


class PreferencesForm(FlaskForm):
    locale = SelectField(_l("Language"), choices=LANGUAGES)
    time_zone = SelectField(_l("Time zone"), choices=TIME_ZONES)


class PasswordConfirmForm(FlaskForm):
    """A fresh password before a download of everything or a closure."""

    current = _current_password()
