"""The rating form (Flask-WTF: CSRF on every form)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import RadioField, TextAreaField
from wtforms.validators import DataRequired, Length

SCORES = [("5", _l("5 — very good")), ("4", _l("4 — good")), ("3", _l("3 — fair")),
          ("2", _l("2 — poor")), ("1", _l("1 — very poor"))]


class RatingForm(FlaskForm):
    score = RadioField(_l("How satisfied are you with this service?"), choices=SCORES,
                       validators=[DataRequired(message=_l("Choose a score from 1 to 5."))])
    comment = TextAreaField(_l("Comment (optional)"),
                            validators=[Length(max=1000, message=_l("At most 1,000 characters."))])
