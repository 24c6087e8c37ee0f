"""Judging single results with the demo catalog and the demo rule set v1."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.rules import (
    HoldCode,
    JudgementContext,
    PreviousResult,
    ResultToJudge,
    SerumIndices,
    judge,
)
from tests.rules.helpers import MEASURED, demo_catalog, demo_ruleset, years


def _judge(
    code: str,
    value: str | None,
    *,
    age_days: int | None = None,
    sex: str = "F",
    comparator: str | None = None,
    flags: tuple[str, ...] = (),
    profile: str = "generic",
    previous: PreviousResult | None = None,
    indices: SerumIndices | None = None,
    qc_locked: bool = False,
    rejected: bool = False,
):  # type: ignore[no-untyped-def]
    subject = ResultToJudge(
        test_code=code,
        value=Decimal(value) if value is not None else None,
        comparator=comparator,
        text="" if value is not None else "positive",
        unit=demo_catalog()[code].unit,
        measured_at=MEASURED,
        instrument="demo",
        flag_profile=profile,
        instrument_flags=flags,
        indices=indices,
    )
    context = JudgementContext(
        test=demo_catalog()[code],
        age_days=years(45) if age_days is None else age_days,
        sex=sex,
        previous=previous,
        qc_locked=qc_locked,
        qc_rule="1-3s",
        specimen_rejected=rejected,
    )
    return judge(subject, context, demo_ruleset())


def test_an_unremarkable_result_is_released_with_the_rule_set_version() -> None:
    judgement = _judge("NA", "140")
    assert judgement.holds == ()
    assert judgement.autoverify
    assert judgement.flag is None
    assert judgement.ruleset_version == 1
    assert (judgement.reference_low, judgement.reference_high) == (Decimal(137), Decimal(145))


def test_sodium_41_is_implausible_not_ll_and_asks_for_a_rerun() -> None:
    judgement = _judge("NA", "41")
    assert judgement.implausible and judgement.rerun
    assert judgement.flag is None  # shown as implausible, not as LL
    assert not judgement.critical
    assert HoldCode.PLAUSIBILITY in judgement.hold_codes
    assert not judgement.autoverify


def test_a_childs_creatinine_of_400_is_flagged_against_the_childs_interval() -> None:
    judgement = _judge("KREA", "400", age_days=years(4), sex="M")
    assert judgement.flag == "H"
    assert (judgement.reference_low, judgement.reference_high) == (Decimal(22), Decimal(53))
    adult = _judge("KREA", "400", sex="M")
    assert (adult.reference_low, adult.reference_high) == (Decimal(60), Decimal(105))


def test_no_interval_for_the_patient_holds_it() -> None:
    # Sodium has no published interval used here under 8 years of age.
    judgement = _judge("NA", "140", age_days=years(3))
    assert judgement.hold_codes == (HoldCode.NO_REFERENCE_INTERVAL,)
    assert not judgement.autoverify
    # Under one week TSH has no published interval here either.
    assert HoldCode.NO_REFERENCE_INTERVAL in _judge("TSH", "3.0", age_days=3).hold_codes


def test_unknown_sex_holds_a_sex_specific_test() -> None:
    judgement = _judge("HB", "14.0", sex="U")
    assert HoldCode.NO_REFERENCE_INTERVAL in judgement.hold_codes
    assert "sex U" in judgement.holds[0].text


def test_analyser_hh_flag_asks_for_a_critical_call() -> None:
    judgement = _judge("K", "4.2", flags=("HH",))
    assert judgement.critical
    assert judgement.hold_codes == (HoldCode.CRITICAL,)


def test_vendor_flag_and_out_of_range_flag_hold_with_instrument_flag() -> None:
    judgement = _judge("K", "4.2", flags=("N", "Clot"))
    assert judgement.hold_codes == (HoldCode.INSTRUMENT_FLAG,)
    assert "Clot" in judgement.holds[0].text and "N" not in judgement.holds[0].text.split()
    ignored = _judge("K", "4.2", flags=("N", "H"))
    assert ignored.autoverify


def test_our_own_critical_limit_holds_critical() -> None:
    judgement = _judge("K", "7.0")
    assert judgement.flag == "HH" and judgement.critical
    assert judgement.hold_codes == (HoldCode.CRITICAL,)


def test_creatinine_84_to_160_overnight_is_held_for_delta() -> None:
    previous = PreviousResult(
        value=Decimal(84), comparator=None, measured_at=MEASURED - timedelta(hours=12)
    )
    judgement = _judge("KREA", "160", sex="M", previous=previous)
    assert HoldCode.DELTA in judgement.hold_codes
    assert judgement.delta is not None and judgement.delta.change == Decimal(76)
    old = PreviousResult(
        value=Decimal(84), comparator=None, measured_at=MEASURED - timedelta(days=3)
    )
    assert HoldCode.DELTA not in _judge("KREA", "160", sex="M", previous=old).hold_codes
    later = PreviousResult(
        value=Decimal(84), comparator=None, measured_at=MEASURED + timedelta(hours=1)
    )
    assert _judge("KREA", "160", sex="M", previous=later).delta is None


def test_haemolysed_potassium_is_held_with_a_coded_comment() -> None:
    judgement = _judge("K", "4.2", indices=SerumIndices(h=Decimal(120)))
    assert judgement.hold_codes == (HoldCode.INTERFERENCE,)
    assert judgement.comments[0].code == "HEM"
    assert _judge("K", "4.2", indices=SerumIndices(h=Decimal(20))).autoverify


def test_qc_lock_and_rejected_specimen_hold() -> None:
    judgement = _judge("NA", "140", qc_locked=True)
    assert judgement.hold_codes == (HoldCode.QC,)
    assert "1-3s" in judgement.holds[0].text
    assert HoldCode.RULE in _judge("NA", "140", rejected=True).hold_codes


def test_every_reason_is_returned_not_only_the_first() -> None:
    previous = PreviousResult(
        value=Decimal("3.0"), comparator=None, measured_at=MEASURED - timedelta(hours=2)
    )
    judgement = _judge(
        "K",
        "7.0",
        flags=("Clot",),
        indices=SerumIndices(h=Decimal(200)),
        previous=previous,
        qc_locked=True,
    )
    assert set(judgement.hold_codes) >= {
        HoldCode.QC,
        HoldCode.INSTRUMENT_FLAG,
        HoldCode.INTERFERENCE,
        HoldCode.CRITICAL,
    }


def test_comparator_values() -> None:
    assert _judge("CRP", "1", comparator="<").autoverify  # below detection: an ordinary result
    held = _judge("NA", "200", comparator=">")
    assert HoldCode.RULE in held.hold_codes


def test_a_test_not_in_the_rule_set_and_text_results_wait() -> None:
    assert HoldCode.RULE in _judge("NA", None).hold_codes


_CODES = sorted(demo_catalog())


@settings(max_examples=300, deadline=None)
@given(
    code=st.sampled_from(_CODES),
    value=st.decimals(min_value=0, max_value=5000, places=2),
    comparator=st.sampled_from([None, "<", ">"]),
    age_days=st.none() | st.integers(min_value=0, max_value=years(110)),
    sex=st.sampled_from(["F", "M", "O", "U"]),
    flags=st.lists(
        st.sampled_from(["N", "L", "H", "LL", "HH", "<", ">", "A", "Clot", "W"]), max_size=3
    ),
    previous=st.none()
    | st.tuples(st.decimals(min_value=0, max_value=5000, places=2), st.integers(-100, 100)),
    haemolysis=st.none() | st.decimals(min_value=0, max_value=1000, places=0),
    qc_locked=st.booleans(),
)
def test_properties_of_every_judgement(  # type: ignore[no-untyped-def]
    code, value, comparator, age_days, sex, flags, previous, haemolysis, qc_locked
) -> None:
    prior = (
        PreviousResult(
            value=previous[0], comparator=None, measured_at=MEASURED + timedelta(hours=previous[1])
        )
        if previous
        else None
    )
    judgement = _judge(
        code,
        str(value),
        comparator=comparator,
        age_days=age_days,
        sex=sex,
        flags=tuple(flags),
        previous=prior,
        indices=SerumIndices(h=haemolysis) if haemolysis is not None else None,
        qc_locked=qc_locked,
    )
    # A result with any hold is never autoverified, and one without is.
    assert judgement.autoverify == (not judgement.holds)
    # An implausible value is never released and is not shown as an ordinary LL/HH.
    if judgement.implausible:
        assert not judgement.autoverify and judgement.flag is None and judgement.rerun
    # A critical flag always asks for a call and (in this rule set) holds.
    if judgement.flag in ("LL", "HH") or "HH" in flags or "LL" in flags:
        assert judgement.critical and HoldCode.CRITICAL in judgement.hold_codes
    if qc_locked:
        assert HoldCode.QC in judgement.hold_codes
    # A result without an applicable interval is never treated as normal.
    if judgement.reference_low is None and judgement.reference_high is None:
        assert not judgement.autoverify
    # Only a previous result measured before this one is compared.
    if prior is not None and prior.measured_at >= MEASURED:
        assert judgement.delta is None
    assert len(set(judgement.holds)) == len(judgement.holds)
