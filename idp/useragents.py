"""Devices named the way their owner knows them ("Chrome di Android"), from the User-Agent header
with ua-parser (the maintained uap-core rules), never by hand."""

from __future__ import annotations

from functools import lru_cache

from flask_babel import gettext as _
from ua_parser import parse

_MAX = 512  # longer headers are cut before parsing: the rules are regular expressions


@lru_cache(maxsize=4096)
def _families(user_agent: str) -> tuple[str, str]:
    result = parse(user_agent[:_MAX])
    browser = result.user_agent.family if result.user_agent else "Other"
    system = result.os.family if result.os else "Other"
    # "Chrome Mobile", "Mobile Safari": the system already says it is a phone.
    browser = browser.removesuffix(" Mobile").removeprefix("Mobile ")
    return browser, system


def device_name(user_agent: str | None) -> str:
    """"Chrome di Android", "Firefox on Windows", or a plain "Unknown device"."""
    if not user_agent:
        return str(_("Unknown device"))
    browser, system = _families(user_agent)
    if browser == "Other" and system == "Other":
        return str(_("Unknown device"))
    if system == "Other":
        return browser
    if browser == "Other":
        return system
    return str(_("%(browser)s on %(system)s", browser=browser, system=system))
