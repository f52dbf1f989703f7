"""Why a NIK or a new password was refused, as the citizen reads it (one home for every form)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

PASSWORD_PROBLEMS = {
    "too_short": _l("Use at least 12 characters. A few unrelated words make a strong password."),
    "too_long": _l("Use at most 128 characters."),
    "too_common": _l("This password is too common and easy to guess. Choose another."),
    "contains_nik": _l("Do not use your NIK in your password."),
    "contains_name": _l("Do not use your name in your password."),
}

NIK_PROBLEMS = {
    "format": _l("A NIK has exactly 16 digits."),
    "province": _l("The first two digits of this NIK are not a province code."),
    "region": _l("The regency or district digits of this NIK are not valid."),
    "bad_date": _l("The birth date in this NIK (digits 7 to 12) is not a real date."),
    "serial": _l("The last four digits of a NIK cannot be 0000."),
}
