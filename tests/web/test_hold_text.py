"""Holds and unmatched reasons said in the page's language from their keys and parameters;
the sentences stored before the keys existed are read once by the migration into the same
keys; unknown English never on a bokmål page."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lab.web.hold_text import HOLD_KEYS, UNMATCHED_CODES, hold_detail
from lab.web.i18n import LANGUAGES, has_text
from lab.web.templating import unmatched_reason

_MIGRATION = Path(__file__).parents[2] / "migrations" / "versions" / "0021_reason_keys.py"


def _migration() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reason_keys", _MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIGRATION = _migration()


def _migrated(sentence: str) -> dict[str, Any]:
    key, params = MIGRATION.hold_key(sentence)
    return {"code": "rule", "text": sentence, "key": key, "params": params}


# The sentences the rules write (lab/rules/judge.py, lab/results/judging.py, recording.py),
# with what a bokmål page shows of each.
SENTENCES = {
    "the specimen is rejected": "prøven er avvist",
    "K is locked by QC on cobas-1 (1-3s)": "K er sperret av kvalitetskontrollen på cobas-1 (1-3s)",
    "K is locked by QC on its analyser": "K er sperret av kvalitetskontrollen på analysatoren sin",
    "K is not released without a person in rule set v3": "K godkjennes ikke uten en person i "
    "regelsett v3",
    "the analyser flagged it critical (HH)": "analysatoren merket den kritisk (HH)",
    "analyser flag CLOT, W": "analysatorflagg CLOT, W",
    "a text result is not released unseen": "et tekstsvar godkjennes ikke uten at noen har "
    "sett det",
    "reported as <0.6: outside the measuring range": "rapportert som <0,6: utenfor måleområdet",
    "41 mmol/L is not a value a living patient can have (plausible 80-200); measure again": "41 "
    "er ikke en verdi en levende pasient kan ha (mulig 80–200); mål på nytt",
    "0.5 is not a value a living patient can have (plausible >= 1.5); measure again": "0,5 er "
    "ikke en verdi en levende pasient kan ha (mulig ≥ 1,5); mål på nytt",
    "changed from 4.1 to 6.2 (limit ±1.0 within 48 h)": "endret fra 4,1 til 6,2 "
    "(grense ±1,0 innen 48 t)",
    "changed from 80 to 160 (limit RCV ±12.5 % within 7 days)": "endret fra 80 til 160 "
    "(grense RCV ±12,5 % innen 7 døgn)",
    "no reference interval: the patient's age at collection is unknown": "ingen referanseverdi: "
    "pasientens alder ved prøvetaking er ukjent",
    "no reference interval for sex F at 12 days of age": "ingen referanseverdi for kjønn kvinne "
    "ved 12 dagers alder",
    "no reference interval applies to this patient": "ingen referanseverdi gjelder for denne "
    "pasienten",
    "outside the autoverification range 3.0-5.5": "utenfor området for autogodkjenning 3,0–5,5",
    "below the critical limit 2.5": "under den kritiske grensen 2,5",
    "above the critical limit 6.2": "over den kritiske grensen 6,2",
    "beyond the critical limit": "utenfor den kritiske grensen",
    "K: haemolysis (H) index 120 > 50; lipaemia (L) index 300 > 200": "hemolyseindeks (H) 120 > "
    "50; lipemiindeks (L) 300 > 200",
    "released together with KREA": "godkjennes sammen med KREA",
    "recalculated: KREA corrected; measurement 2 (rerun) chosen": "beregnet på nytt: KREA "
    "korrigert",
    "measured 2 times with different values: choose the one to report": "målt 2 ganger med ulike "
    "verdier: velg den som skal rapporteres",
}


def test_every_key_has_a_text_in_both_languages() -> None:
    for language in LANGUAGES:
        assert [k for k in HOLD_KEYS if not has_text(language, f"hold.text.{k}")] == []
        assert [c for c in UNMATCHED_CODES if not has_text(language, f"unmatched.why.{c}")] == []
        assert has_text(language, "hold.its_analyser")


@pytest.mark.parametrize("sentence", sorted(SENTENCES))
def test_a_stored_sentence_migrates_to_its_key_and_is_said_in_bokmal(sentence: str) -> None:
    hold = _migrated(sentence)
    assert hold["key"] in HOLD_KEYS
    assert hold_detail(hold, "nb") == SENTENCES[sentence]
    english = hold_detail(hold, "en")
    assert english and english != SENTENCES[sentence]


def test_the_pages_read_the_key_never_the_sentence() -> None:
    hold = {"code": "critical", "text": "anything at all", "key": "critical_above"}
    hold["params"] = {"limit": "6.2"}
    assert hold_detail(hold, "nb") == "over den kritiske grensen 6,2"
    qc = {"code": "qc", "text": "", "key": "qc_locked", "params": {"test": "K", "analyser": ""}}
    assert hold_detail(qc, "nb") == "K er sperret av kvalitetskontrollen på analysatoren sin"


def test_each_hold_the_rules_write_has_a_key_the_migration_agrees_with() -> None:
    from lab.rules import PreviousResult, SerumIndices
    from tests.rules.helpers import MEASURED
    from tests.rules.test_judge import _judge

    cases = [
        _judge("NA", "41"),
        _judge("NA", "140", qc_locked=True, rejected=True),
        _judge("K", "7.0", flags=("Clot", "HH"), indices=SerumIndices(h=Decimal(200))),
        _judge("NA", "200", comparator=">"),
        _judge("NA", None),
        _judge("K", "4.0", age_days=None, sex="U"),
        _judge(
            "KREA",
            "160",
            previous=PreviousResult(
                value=Decimal(84), comparator=None, measured_at=MEASURED.replace(hour=1)
            ),
        ),
    ]
    seen = set()
    for judgement in cases:
        for hold in judgement.holds:
            assert hold.key in HOLD_KEYS, hold
            assert MIGRATION.hold_key(hold.text) == (hold.key, dict(hold.params)), hold
            assert hold_detail({"key": hold.key, "params": hold.params}, "nb")
            seen.add(hold.key)
    assert len(seen) >= 8, seen


def test_a_hold_without_a_key_is_not_shown_in_english_on_a_bokmal_page() -> None:
    hold = {"code": "rule", "text": "a brand new rule held it", "key": "", "params": {}}
    assert hold_detail(hold, "nb") == ""
    assert hold_detail(hold, "en") == "a brand new rule held it"


def test_the_rule_set_that_released_a_result_is_named_in_the_pages_words() -> None:
    from lab.web.hold_text import version_reason, who
    from lab.web.printouts import signer_name

    assert who("autoverification v3", "nb") == "autogodkjent (regelsett v3)"
    assert who("autoverification v3", "en") == "autoverified (rule set v3)"
    assert who("lege", "nb") == "lege"
    # The report needs no user row for it (the session is not asked).
    assert signer_name(None, "autoverification v1", "nb") == "autogodkjent (regelsett v1)"  # type: ignore[arg-type]
    assert version_reason("rerun", "nb") == "omkjøring"
    assert version_reason("measurement 2 (rerun) chosen", "nb") == "måling 2 (omkjøring) valgt"
    assert (
        version_reason("recalculated: KREA corrected", "nb") == "beregnet på nytt: KREA korrigert"
    )
    assert version_reason("skrivefeil", "nb") == "skrivefeil"


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        (
            "test code 'XYZ' is not mapped for analyser cobas-1",
            "analysekoden «XYZ» er ikke koblet til en analyse for analysatoren cobas-1",
        ),
        ("K is not ordered on 2600000014", "K er ikke rekvirert på 2600000014."),
        ("unknown test code 'XYZ'", "Ukjent analysekode «XYZ»."),
        (
            "K takes a number: -4 is negative; this quantity cannot be below zero",
            "K skal ha et tall: «-4» er negativ, og denne størrelsen kan ikke være under null.",
        ),
        (
            "K is reported in mmol/L, not mg/dL; no conversion is made",
            "K rapporteres i mmol/L; mg/dL kan ikke regnes om til det.",
        ),
        ("no specimen with accession number 2600000099", "Ingen prøve har prøvenummer 2600000099."),
    ],
)
def test_stored_unmatched_reasons_migrate_and_are_said_in_bokmal(reason: str, shown: str) -> None:
    code, params = MIGRATION.unmatched_code(reason)
    assert code
    assert unmatched_reason("nb", code, params) == shown
    assert unmatched_reason("en", code, params)
