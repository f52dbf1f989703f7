"""Registration forms (Flask-WTF: CSRF on every one). Messages are English msgids, shown in Indonesian
by default through the identity catalog."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import DateField, EmailField, PasswordField, StringField, TelField
from wtforms.validators import DataRequired, EqualTo, Length, Optional

from idp.identity import passwords


class BirthDateField(DateField):
    """A date input whose parse error is ours (translated), not WTForms' English one."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(str(_l("Enter your date of birth as day, month and year."))) from None


class IdentityForm(FlaskForm):
    nik = StringField(_l("NIK (16 digits, as on your KTP)"),
                      validators=[DataRequired(message=_l("Enter your NIK.")), Length(max=32)],
                      render_kw={"inputmode": "numeric"})
    full_name = StringField(_l("Full name, as on your KTP"),
                            validators=[DataRequired(message=_l("Enter your full name.")),
                                        Length(max=200)])
    birth_date = BirthDateField(_l("Date of birth"),
                                validators=[DataRequired(message=_l("Enter your date of birth."))])

    def validate_birth_date(self, field: BirthDateField) -> None:
        if field.data and not dt.date(1870, 1, 1) <= field.data <= dt.date.today():
            from wtforms.validators import ValidationError

            raise ValidationError(str(_l("Enter your date of birth as day, month and year.")))


class ContactForm(FlaskForm):
    email = EmailField(_l("Email address"), validators=[Optional(), Length(max=254)])
    phone = TelField(_l("Mobile phone number"), validators=[Optional(), Length(max=32)],
                     render_kw={"inputmode": "tel"})


class CodeForm(FlaskForm):
    # Not DataRequired: the same form's second button asks for a new code with the field empty.
    code = StringField(_l("6-digit code"), validators=[Length(max=16)],
                       render_kw={"inputmode": "numeric", "maxlength": "7"})


class PasswordForm(FlaskForm):
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(message=_l("Choose a password.")), Length(max=passwords.MAX_LENGTH)],
    )
    confirm = PasswordField(
        _l("Repeat the password"),
        validators=[DataRequired(message=_l("Repeat the password.")),
                    EqualTo("password", message=_l("The two passwords are not the same."))],
    )
