"""One language per page: every text a page can show is in both message catalogs.

The keys come from three places: the templates (Babel's Jinja2 extractor, `t()` and `tn()`),
the error codes services raise (`code=` and the third argument of `FieldProblem`), and the
families pages build from data (`status.<value>`, `role.<name>`, ...). A key missing from either
catalog, or present with an empty or fuzzy translation, fails here; a page rendered in any other
test with a missing key fails that test too (strict mode, tests/web/conftest.py).
"""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir

from lab.errors import Conflict, FieldProblem, InvalidInput, NotFound
from lab.hl7 import messagelog
from lab.specimens.service import REJECT_REASONS
from lab.specimens.views import OUTCOMES
from lab.tables import Priority, ResultStatus, SpecimenStatus
from lab.tables import TestStatus as OrderedTestStatus
from lab.users.roles import Permission, Role
from lab.web import i18n
from lab.web.pages import NOTICES
from lab.web.templating import error_text, number

ROOT = Path(__file__).resolve().parents[2]
KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)+$")


def _catalogs() -> dict[str, Catalog]:
    return {language: i18n.read_catalog(language) for language in i18n.LANGUAGES}


def template_keys() -> set[str]:
    keys: set[str] = set()
    method_map = [("**.html", "jinja2")]
    options = {"**.html": {"extensions": "", "trimmed": "false"}}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT / "templates"),
        method_map=method_map,
        options_map=options,
        keywords={"t": None, "tn": (1,)},
    ):
        found = message if isinstance(message, str) else message[0]
        if found:
            keys.add(found)
    return keys


def error_codes() -> set[str]:
    """Every `code="..."` and `FieldProblem(field, message, "code")` in the lab's own code."""
    codes: set[str] = set()
    for path in [*(ROOT / "lab").rglob("*.py"), *(ROOT / "instruments").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                value = keyword.value
                if (
                    keyword.arg == "code"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                    and _raises_lab_error(node)
                ):
                    codes.add(value.value)
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "FieldProblem" and len(node.args) >= 3:
                third = node.args[2]
                if isinstance(third, ast.Constant) and isinstance(third.value, str):
                    codes.add(third.value)
    return codes


ERROR_CALLS = {
    "InvalidInput",
    "NotFound",
    "Conflict",
    "PermissionDenied",
    "LabError",
    "field",
    "Refusal",
}


def _raises_lab_error(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ERROR_CALLS or name.endswith("Error")


# Strings in page code that look like keys but are not texts (templates; event names, whose
# texts are `event.<name>`).
NOT_KEYS = {"error.html", "order.placed", "test.cancelled"}


def view_keys() -> set[str]:
    """Keys named as strings in the page code (`error_key="login.stale"`, `"entry.nothing"`)."""
    prefixes = {key.split(".", 1)[0] for key in _catalogs()["nb"]._messages}
    keys: set[str] = set()
    paths = [*(ROOT / "lab" / "web").glob("*.py"), *(ROOT / "lab").glob("*/views.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if KEY.match(text) and text.split(".", 1)[0] in prefixes and text not in NOT_KEYS:
                    keys.add(text)
    return keys


def data_keys() -> set[str]:
    """The families pages build from values in the data."""
    statuses = {*SpecimenStatus, *OrderedTestStatus, *ResultStatus, "active"}
    keys = {f"status.{s}" for s in statuses}
    keys |= {f"priority.{p}" for p in Priority}
    keys |= {f"reject.{code}" for code in REJECT_REASONS} | {"reject.unknown"}
    keys |= {f"role.{r}" for r in Role} | {f"permission.{p}" for p in Permission}
    keys |= {f"scan.{o}" for o in OUTCOMES} | {f"notice.{n}" for n in NOTICES}
    keys |= {f"flag.{f}" for f in ("L", "H", "LL", "HH", "A")}
    keys |= {f"sex.{s}" for s in "FMOU"}
    keys |= {f"component.{s}" for s in ("up", "down", "attention", "waiting", "unknown")}
    keys |= {f"event.{s}" for s in SpecimenStatus} | {"event.aliquoted"}
    keys |= {f"event.result.{s}" for s in ResultStatus}
    keys |= {"event.order.placed", "event.test.cancelled", "event.created"}
    keys |= {f"hl7.status.{s}" for states in messagelog.STATUSES.values() for s in states}
    keys |= {f"hl7.direction.{d}" for d in messagelog.STATUSES}
    lines = ("connected", "listening", "connecting", "waiting", "disconnected", "stopped", "error")
    keys |= {f"analysers.line.{state}" for state in lines}
    keys |= {"notice.user_enabled", "notice.user_disabled"}
    return keys


def every_key() -> set[str]:
    return template_keys() | view_keys() | data_keys() | {f"error.{c}" for c in error_codes()}


def test_the_extractors_find_what_the_pages_use() -> None:
    """Guards the guard: if extraction broke, the test below would pass on nothing."""
    assert {"review.title", "receive.scan_label", "login.submit"} <= template_keys()
    assert {"specimen_unknown", "critical_call_missing", "value_not_number"} <= error_codes()
    assert "login.stale" in view_keys()
    assert len(every_key()) > 250


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_text_is_translated(language: i18n.Language) -> None:
    catalog = _catalogs()[language]
    missing = []
    for key in sorted(every_key()):
        message = catalog.get(key)
        if message is None or message.fuzzy:
            missing.append(key)
            continue
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(texts):
            missing.append(key)
    assert not missing, f"untranslated in {language}: {missing}"


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogs_have_the_same_keys_and_placeholders() -> None:
    nb, en = _catalogs()["nb"], _catalogs()["en"]
    nb_keys = {m.id if isinstance(m.id, str) else m.id[0] for m in nb if m.id}
    en_keys = {m.id if isinstance(m.id, str) else m.id[0] for m in en if m.id}
    assert nb_keys == en_keys
    for message in nb:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        other = en.get(key)
        assert other is not None
        ours = message.string if isinstance(message.string, tuple) else (message.string,)
        theirs = other.string if isinstance(other.string, tuple) else (other.string,)
        assert {frozenset(_placeholders(t)) for t in ours} == {
            frozenset(_placeholders(t)) for t in theirs
        }, key


def test_a_missing_text_fails_in_strict_mode() -> None:
    with pytest.raises(i18n.MissingText):
        i18n.translate("nb", "no.such.key")


def test_plural_forms() -> None:
    assert i18n.translate_plural("nb", "component.unmatched", 1) == "1 uparret"
    assert i18n.translate_plural("nb", "component.unmatched", 3) == "3 uparrede"
    assert i18n.translate_plural("en", "component.dead", 2) == "2 dead letters"


def test_service_errors_are_translated_at_the_edge() -> None:
    exc = NotFound("no specimen 123", code="specimen_unknown", params={"number": "123"})
    assert error_text("nb", exc) == "Ingen prøve har prøvenummer 123."
    assert error_text("en", exc) == "No specimen has the accession number 123."
    moved = Conflict(
        "x",
        code="specimen_transition",
        params={"number": "1", "status": "rejected", "target": "received"},
    )
    assert error_text("nb", moved) == "1 er avvist og kan ikke bli mottatt."
    field = InvalidInput.field("value", "x", code="value_empty")
    assert error_text("nb", field) == "Verdien er tom."
    # Without a code the service's own words are shown rather than nothing.
    assert error_text("nb", InvalidInput("plain words")) == "plain words"
    problems = InvalidInput(
        "first", problems=[FieldProblem("a", "first", "tests_missing"), FieldProblem("b", "second")]
    )
    assert error_text("nb", problems) == "Rekvisisjonen ber ikke om noen analyser.; second"


def test_numbers_in_norwegian_format() -> None:
    from decimal import Decimal

    assert number(Decimal("4.50")) == "4,50"
    assert number(Decimal("-1.5")) == "\u22121,5"
    assert number(Decimal("12345.6")) == "12345,6"  # never grouped: a space splits a value
    assert number(Decimal("1E+1")) == "10"
    assert number(Decimal("4.50"), "en") == "4.50"


def test_the_critical_call_record_is_in_the_page_language_and_oslo_time() -> None:
    from lab.web.templating import environment

    record = "told Lise Lien at 2026-11-27T07:15:00+00:00, read back: yes"
    shown = environment.from_string("{{ r|critical_call }}")
    assert shown.render(lang="nb", r=record) == (
        "Varslet Lise Lien 27.11.2026 08:15, verdien lest tilbake: ja"
    )
    assert shown.render(lang="en", r=record) == (
        "Told Lise Lien at 27.11.2026 08:15, value read back: yes"
    )


def test_timeline_details_in_the_page_language() -> None:
    from lab.web.timeline_text import event_detail

    assert event_detail("for order LAB000000002", "nb") == "til rekvisisjon LAB000000002"
    assert event_detail("2600000023 for order LAB000000002", "en") == (
        "2600000023 for order LAB000000002"
    )
    assert event_detail("2600000023 received in the lab", "nb") == (
        "2600000023 mottatt i laboratoriet"
    )
    assert event_detail("clotted: koagel i røret", "nb") == "Koagulert: koagel i røret"
    assert event_detail("typed by a person", "nb") == "typed by a person"
