"""Second-factor forms (Flask-WTF: CSRF on every one)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField, TelField
from wtforms.validators import DataRequired, Length


class StepUpContext(FlaskForm):
    """Where the citizen is going: a pending authorization or a local page."""

    interaction = HiddenField()
    next = HiddenField()


class CodeForm(StepUpContext):
    factor = HiddenField()
    code = StringField(_l("Code"), validators=[DataRequired(message=_l("Enter the code.")),
                                               Length(max=32)])


class SendCodeForm(StepUpContext):
    factor = HiddenField()


class TotpConfirmForm(FlaskForm):
    code = StringField(_l("The 6-digit code your app shows now"),
                       validators=[DataRequired(message=_l("Enter the code.")), Length(max=16)])


class PasskeyNameForm(FlaskForm):
    name = StringField(_l("Name of this passkey"),
                       validators=[DataRequired(message=_l("Give the passkey a name.")),
                                   Length(max=64)])


class ConfirmForm(FlaskForm):
    """A button that changes something; ``confirm`` is set once the citizen saw a warning."""

    confirm = HiddenField()


class PhoneForm(FlaskForm):
    phone = TelField(_l("Mobile phone number"),
                     validators=[DataRequired(message=_l("Enter your mobile phone number.")),
                                 Length(max=32)], render_kw={"inputmode": "tel"})
    # Asked except right after registering: a phone receives password-reset links.
    current = PasswordField(_l("Your current password"), validators=[Length(max=128)])


class PhoneCodeForm(FlaskForm):
    """The code sent to the number; the number travels back with it and must be where it went."""

    phone = HiddenField()
    code = StringField(_l("6-digit code"),
                       validators=[DataRequired(message=_l("Enter the code.")), Length(max=16)],
                       render_kw={"inputmode": "numeric"})
