"""Texts of the web pages in bokmål (the default) and English, from gettext message catalogs.

The catalogs are `lab/web/locale/<language>/LC_MESSAGES/messages.po`, one per language, read and
compiled by Babel when this module is first used: nothing is compiled or installed by hand, and
an edited `.po` file takes effect at the next start. A msgid is a key naming where the text is
used (`receive.title`) or what it names (`status.received`), so both languages are translations
and a key missing from either is caught (tests/web/test_i18n.py). Placeholders are `{name}`.

A missing text is a defect. In `strict` mode (the tests) it raises; in production the page
shows the other language's text, or the key, rather than failing in front of a patient's data.
"""

from __future__ import annotations

import io
import logging
from functools import cache
from pathlib import Path
from typing import Literal

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

log = logging.getLogger(__name__)

Language = Literal["nb", "en"]
LANGUAGES: tuple[Language, ...] = ("nb", "en")
LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "messages"


class MissingText(LookupError):
    """A page asked for a text that one of the catalogs does not have."""


class _Mode:
    strict = False


mode = _Mode()


def catalog_path(language: Language) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: Language) -> Catalog:
    with catalog_path(language).open("rb") as source:
        return read_po(source, locale="nb_NO" if language == "nb" else "en")


@cache
def translations(language: Language) -> Translations:
    """The compiled catalog (fuzzy entries count as untranslated, as with msgfmt)."""
    compiled = io.BytesIO()
    write_mo(compiled, read_catalog(language), use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


@cache
def known_keys(language: Language) -> frozenset[str]:
    """Keys with a translation (a text may equal its key: `yes` is `yes` in English)."""
    keys = set()
    for message in read_catalog(language):
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.id and not message.fuzzy and all(texts):
            keys.add(message.id if isinstance(message.id, str) else message.id[0])
    return frozenset(keys)


def has_text(language: Language, key: str) -> bool:
    return key in known_keys(language)


def translate(language: Language, key: str, **values: object) -> str:
    """The text for `key` in `language`, with `{name}` placeholders filled from `values`."""
    text = translations(language).gettext(key)
    if not has_text(language, key):
        if mode.strict:
            raise MissingText(f"no {language} text for {key!r}")
        log.warning("no %s text for %r", language, key)
        other: Language = "en" if language == "nb" else "nb"
        text = translations(other).gettext(key)
        if text == key:
            return key.rsplit(".", 1)[-1].replace("_", " ")
    return text.format(**values) if values else text


def translate_plural(language: Language, key: str, count: int, **values: object) -> str:
    """`key` has a singular and a plural form (msgid_plural `<key>.plural`)."""
    text = translations(language).ngettext(key, f"{key}.plural", count)
    if not has_text(language, key):
        if mode.strict:
            raise MissingText(f"no {language} text for {key!r}")
        return str(count)
    return text.format(count=count, **values)
