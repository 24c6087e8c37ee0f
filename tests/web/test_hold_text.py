"""Holds said in the page's language with the rule's figures; unknown English never on a
bokmål page."""

from __future__ import annotations

import pytest

from lab.web.hold_text import hold_detail, known

# The sentences the rules write (lab/rules/judge.py, lab/results/judging.py, recording.py),
# with what a bokmål page shows of each.
SENTENCES = {
    "the specimen is rejected": "prøven er avvist",
    "K is locked by QC on cobas-1 (1-3s)": "K er sperret av kvalitetskontrollen på cobas-1 (1-3s)",
    "K is locked by QC on its analyser": "K er sperret av kvalitetskontrollen på its analyser",
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
    "measured 2 times with different values: choose the one to report": "målt 2 ganger med ulike "
    "verdier: velg den som skal rapporteres",
}


@pytest.mark.parametrize("sentence", sorted(SENTENCES))
def test_each_hold_is_said_in_bokmal_with_its_figures(sentence: str) -> None:
    assert known(sentence)
    assert hold_detail(sentence, "nb") == SENTENCES[sentence]
    english = hold_detail(sentence, "en")
    assert english and english != SENTENCES[sentence]


def test_an_unknown_sentence_is_not_shown_in_english_on_a_bokmal_page() -> None:
    assert hold_detail("a brand new rule held it", "nb") == ""
    assert hold_detail("a brand new rule held it", "en") == "a brand new rule held it"


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
            "K rapporteres i mmol/L, ikke mg/dL; ingen omregning gjøres.",
        ),
        ("no specimen with accession number 2600000099", "Ingen prøve har prøvenummer 2600000099."),
    ],
)
def test_unmatched_reasons_are_said_in_bokmal(reason: str, shown: str) -> None:
    from lab.web.hold_text import unmatched_known, unmatched_reason

    assert unmatched_known(reason)
    assert unmatched_reason(reason, "nb") == shown
