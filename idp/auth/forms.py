"""Login and password forms (Flask-WTF: CSRF on every one)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from idp.identity import passwords


class LoginForm(FlaskForm):
    nik = StringField(_l("NIK (16 digits, as on your KTP)"),
                      validators=[DataRequired(message=_l("Enter your NIK.")), Length(max=32)])
    password = PasswordField(_l("Password"),
                             validators=[DataRequired(message=_l("Enter your password.")),
                                         Length(max=passwords.MAX_LENGTH)])
    interaction = HiddenField()
    next = HiddenField()


class ForgotPasswordForm(FlaskForm):
    nik = StringField(_l("NIK (16 digits, as on your KTP)"),
                      validators=[DataRequired(message=_l("Enter your NIK.")), Length(max=32)])


class NewPasswordForm(FlaskForm):
    password = PasswordField(
        _l("New password"),
        validators=[DataRequired(message=_l("Choose a password.")), Length(max=passwords.MAX_LENGTH)],
    )
    confirm = PasswordField(
        _l("Repeat the new password"),
        validators=[DataRequired(message=_l("Repeat the password.")),
                    EqualTo("password", message=_l("The two passwords are not the same."))],
    )
