"""The helpdesk's forms (Flask-WTF: every post carries its CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional


class StaffLoginForm(FlaskForm):
    email = EmailField(_l("Work email"), validators=[DataRequired(), Length(max=255)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


class StaffCodeForm(FlaskForm):
    code = StringField(_l("Code from your authenticator app"),
                       validators=[DataRequired(), Length(max=16)])


class EnrolmentForm(FlaskForm):
    password = PasswordField(_l("New password (at least 12 characters)"),
                             validators=[DataRequired(), Length(min=12, max=200)])
    code = StringField(_l("Code from your authenticator app"),
                       validators=[DataRequired(), Length(max=16)])


class OpenCaseForm(FlaskForm):
    channel = SelectField(_l("How the citizen reached us"),
                          choices=[SelectChoice("counter", _l("Counter visit")),
                                   SelectChoice("phone", _l("Phone call"))])
    summary = TextAreaField(_l("What the citizen asks for"),
                            validators=[DataRequired(), Length(max=2000)])


class LookupForm(FlaskForm):
    nik = StringField(_l("NIK"), validators=[DataRequired(), Length(max=32)])
    reason = StringField(_l("Reason for the lookup"), validators=[DataRequired(), Length(max=500)])


class EvidenceForm(FlaskForm):
    name = StringField(_l("Full name, as the citizen states it"), validators=[Length(max=200)])
    birth_date = DateField(_l("Birth date"), validators=[Optional()])
    birth_place = StringField(_l("Birth place"), validators=[Length(max=100)])
    family_card = StringField(_l("Family card (KK) number"), validators=[Length(max=32)])
    ktp_el = BooleanField(_l("The KTP-el was presented, and its photo and NIK match the person"))


class ActionForm(FlaskForm):
    kind = SelectField(_l("Action"), choices=[])
    value = StringField(_l("New email address or phone number (for a replacement)"),
                        validators=[Length(max=255)])


class CloseForm(FlaskForm):
    outcome = TextAreaField(_l("Outcome"), validators=[DataRequired(), Length(max=2000)])


class NotMeForm(FlaskForm):
    end_grants = BooleanField(_l("Stop this service's access to my account now"), default=True)
    end_sessions = BooleanField(_l("Log out every other device now"), default=True)
