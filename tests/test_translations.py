"""Every string a citizen can read has its Indonesian translation: the text of the code and the
templates, extracted as Babel extracts it, against the catalogs of every area; and one translation
only, whichever area's catalog holds it."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "_l": None, "gettext": None, "lazy_gettext": None}


def test_every_message_has_an_indonesian_translation() -> None:
    found: dict[str, str] = {}
    for folder, method in (("idp", [("**.py", "python")]), ("templates", [("**.html", "jinja2")])):
        for filename, line, message, _comments, _context in extract_from_dir(
                ROOT / folder, method, keywords=KEYWORDS):
            text = message if isinstance(message, str) else message[0]
            found.setdefault(text, f"{folder}/{filename}:{line}")
    translated = set()
    for po in (ROOT / "idp").rglob("id/LC_MESSAGES/*.po"):
        with po.open("rb") as f:
            translated |= {m.id for m in read_po(f) if m.id and m.string}
    missing = [f"{where}: {text!r}" for text, where in found.items() if text not in translated]
    assert len(found) > 250  # the extraction sees the whole application
    assert not missing, "untranslated:\n  " + "\n  ".join(missing)


def test_a_message_has_one_translation_in_every_catalog() -> None:
    """Flask-Babel merges the areas' catalogs into one, the last merged winning, so a message with
    two translations shows one of them on every page, whichever area it is on. No exceptions: a word
    that must read differently in two places needs its own msgctxt (pgettext)."""
    seen: dict[tuple[str, str | None, object], dict[str, object]] = {}
    for po in sorted((ROOT / "idp").rglob("*/LC_MESSAGES/*.po")):
        locale = po.parent.parent.name
        with po.open("rb") as f:
            catalog = read_po(f)
        for m in catalog:
            if m.id and m.string and not m.fuzzy:  # a fuzzy entry is not compiled
                seen.setdefault((locale, m.context, m.id), {})[str(po.relative_to(ROOT))] = m.string
    differing = [f"{message!r}: " + ", ".join(f"{where}: {text!r}" for where, text in found.items())
                 for (_locale, _context, message), found in seen.items() if len(set(found.values())) > 1]
    assert sum(len(found) > 1 for found in seen.values()) > 10  # the check sees shared messages
    assert not differing, "translated differently:\n  " + "\n  ".join(differing)
