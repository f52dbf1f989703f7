"""Every string a citizen can read has its Indonesian translation: the text of the code and the
templates, extracted as Babel extracts it, against the catalogs of every area."""

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
