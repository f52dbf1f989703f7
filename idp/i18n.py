"""Bahasa Indonesia (default) and English, and Indonesia's three time zones, via Flask-Babel.

The language comes from ``?lang=`` (remembered in the UI cookie), then the remembered choice, then the
pending authorization's ``ui_locales`` (``prefer``), then Indonesian. Times are shown in the zone
the composition root's ``time_zone`` hook gives (the signed-in citizen's), else WIB, and always
with their zone's name (WIB, WITA, WIT): a time without its zone means three different times here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from babel import dates
from flask import Flask, g, request, session
from flask_babel import Babel, format_datetime, get_locale, get_timezone

LOCALES = ("id", "en")
DEFAULT_LOCALE = "id"
_PREFERRED = "i18n_ui_locales"  # this request's ui_locales (OIDC Core §3.1.2.1), set by ``prefer``


#: Indonesia's zones (no daylight saving), by their IANA names, with the names citizens use.
ZONES = {"Asia/Jakarta": "WIB", "Asia/Makassar": "WITA", "Asia/Jayapura": "WIT"}
DEFAULT_ZONE = "Asia/Jakarta"


def prefer(ui_locales: str) -> None:
    """Speak one of these languages in this request (space-separated tags, preferred first)."""
    setattr(g, _PREFERRED, ui_locales)


def select_locale() -> str:
    wanted = request.args.get("lang")
    if wanted in LOCALES:
        session["lang"] = wanted
        return wanted
    remembered = session.get("lang")
    if remembered in LOCALES:
        return str(remembered)
    for tag in (g.get(_PREFERRED) or "").split():
        base = tag.split("-")[0].lower()
        if base in LOCALES:
            return base
    return DEFAULT_LOCALE


def localtime(value: dt.datetime | int | float | None, fmt: str = "d MMM y, HH.mm",
              zone: str | None = None) -> str:
    """A moment as a citizen reads it: in their zone (this request's, or ``zone`` for a message to
    someone else), with the zone's name: "24 Nov 2026, 14.05 WITA"."""
    if value is None:
        return ""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if zone is None:
        zone = str(get_timezone())
        text = format_datetime(value, fmt)
    else:
        text = dates.format_datetime(value, fmt, tzinfo=dates.get_timezone(zone), locale=get_locale())
    return f"{text} {ZONES.get(zone, zone)}"


class Moment:
    """A time for a message, rendered when the message is (in the recipient's language, set by
    ``force_locale``) and in the recipient's zone, not the zone of whoever caused it."""

    def __init__(self, at: dt.datetime, zone: str) -> None:
        self.at, self.zone = at, zone

    def __str__(self) -> str:
        return localtime(self.at, zone=self.zone)


def init_app(app: Flask, time_zone: Callable[[], str | None] = lambda: None) -> None:
    """``time_zone``: the zone of whoever this request is for (None: WIB)."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LOCALE)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(translation_dirs())

    def select_time_zone() -> str:
        zone = time_zone()
        return zone if zone in ZONES else DEFAULT_ZONE

    Babel(app, locale_selector=select_locale, timezone_selector=select_time_zone)
    app.add_template_filter(localtime, "localtime")

    @app.template_filter("merge_lang")
    def _merge_lang(args: dict[str, str], code: str) -> str:
        from urllib.parse import urlencode

        return urlencode({**args, "lang": code})

    @app.context_processor
    def _locale_context() -> dict[str, object]:
        from flask_babel import get_locale

        return {"current_locale": str(get_locale() or DEFAULT_LOCALE), "locales": LOCALES}


def translation_dirs() -> list[str]:
    """The main catalog and one per area (each area keeps its own strings beside its code)."""
    from pathlib import Path

    pkg = Path(__file__).parent
    areas = sorted(d for d in pkg.rglob("translations") if d != pkg / "translations")
    return [str(d) for d in [pkg / "translations", *areas] if d.is_dir()]


def compile_catalogs() -> None:
    """Compile every ``.po`` to ``.mo`` (run by ``make install``; the .mo files are not kept in git).

    Each file is written beside its place and renamed into it: a process loading the catalogs
    meanwhile (a running server, another test session) reads the old file or the new, never half
    of one."""
    import os
    from pathlib import Path

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    for directory in translation_dirs():
        for po in Path(directory).glob("*/LC_MESSAGES/*.po"):
            with po.open("rb") as f:
                catalog = read_po(f)
            mo = po.with_suffix(".mo")
            partial = mo.with_name(f".{mo.name}.{os.getpid()}")
            try:
                with partial.open("wb") as f:
                    write_mo(f, catalog)
                partial.replace(mo)
            finally:
                partial.unlink(missing_ok=True)  # gone already once renamed


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["compile"]:
        compile_catalogs()
    else:
        raise SystemExit("usage: python -m idp.i18n compile")
