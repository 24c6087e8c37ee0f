"""Judgement in the recording transaction: holds with their reasons, autoverification by the
rule set, and the properties a lab relies on (hypothesis over values, ages, sexes, histories)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab.patients.service import Demographics, IdentifierInput
from lab.results import service as results
from lab.results.judging import ActiveRules
from lab.results.queries import stored
from lab.results.service import Measurement
from lab.specimens import service as specimens
from lab.tables import AuditEvent, Hl7Message, ReportedResult, ResultVersion
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor
from tests.rules.helpers import demo_ruleset

BIO = actor(Role.TECHNICIAN)
ANALYSER = actor(Role.INSTRUMENT, "cobas-1")
LEGE = actor(Role.PHYSICIAN)
AT = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
_numbers = itertools.count(1)


def rules() -> ActiveRules:
    return ActiveRules(autoverification=demo_ruleset())


def patient(born: date | None, sex: str) -> Demographics:
    return Demographics(
        identifiers=[IdentifierInput(value=f"AV{next(_numbers):06d}", authority="HP-LOCAL")],
        family_name="Testesen",
        given_name="Test",
        birth_date=born,
        sex=sex,
    )


def tube(db: Session, who: Demographics, tests: list[str]) -> str:
    order = place(db, BIO, placer=f"AV-{next(_numbers)}", tests=tests, patient=who)
    number = next(s.accession_number for s in specimens.tubes_of_order(db, order.id))
    specimens.receive(db, actor=BIO, number=number)
    return number


def measure(number: str, code: str, value: str, at: datetime = AT, **kw: object) -> Measurement:
    fields: dict[str, object] = {
        "instrument": "cobas-1",
        "observed_at": at,
        "flag_profile": "cobas",
        **kw,
    }
    return Measurement(accession_number=number, test_code=code, value=value, **fields)  # type: ignore[arg-type]


ADULT = date(1970, 5, 1)


def test_a_normal_result_is_verified_by_the_rule_set_and_sent(db: Session) -> None:
    number = tube(db, patient(ADULT, "F"), ["NA"])
    outcome = results.record(
        db,
        actor=ANALYSER,
        measurement=measure(number, "NA", "140", instrument_flags="N"),
        rules=rules(),
    )
    result = stored(db, outcome)
    assert result.status == "verified" and result.verified_by == "autoverification v1"
    assert result.holds == [] and result.ruleset_version == 1
    assert [(v.status, v.author) for v in result.versions] == [
        ("awaiting_review", "cobas-1"),
        ("verified", "autoverification v1"),
    ]
    trail = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.entity_type == "result", AuditEvent.entity_id == str(result.id))
        .order_by(AuditEvent.id)
    ).all()
    assert [(e.action, e.actor_name) for e in trail] == [
        ("result.record", "cobas-1"),
        ("result.autoverify", "autoverification v1"),
    ]
    assert trail[1].after is not None and trail[1].after["ruleset_version"] == 1
    # The order is complete: its ORU is queued in the same transaction, with this result.
    db.flush()
    reported = db.scalars(select(ReportedResult).where(ReportedResult.result_id == result.id)).all()
    assert [(r.result_version, r.observation_status) for r in reported] == [(2, "F")]
    message = db.get(Hl7Message, reported[0].message_id)
    assert message is not None and message.message_type == "ORU^R01"
    assert b"|140|" in message.raw


def test_each_reason_holds_the_result(db: Session) -> None:
    cases = {
        "plausibility": ("NA", "41", {}),
        "critical": ("K", "7.1", {}),
        "instrument_flag": ("K", "4.1", {"instrument_flags": "CLOT"}),
    }
    for code, (test, value, extra) in cases.items():
        number = tube(db, patient(ADULT, "M"), [test])
        outcome = results.record(
            db, actor=ANALYSER, measurement=measure(number, test, value, **extra), rules=rules()
        )
        result = stored(db, outcome)
        assert result.status == "awaiting_review", code
        assert code in [hold["code"] for hold in result.holds], (code, result.holds)
    # No interval applies when the age is unknown: held, and never unremarkable.
    number = tube(db, patient(None, "U"), ["KREA"])
    outcome = results.record(
        db, actor=ANALYSER, measurement=measure(number, "KREA", "80"), rules=rules()
    )
    result = stored(db, outcome)
    assert [hold["code"] for hold in result.holds] == ["no_reference_interval"]
    assert results.verify_unremarkable(db, actor=LEGE, accession_number=number) == []


def test_a_delta_beyond_its_limit_holds_with_the_limit_shown(db: Session) -> None:
    who = patient(ADULT, "M")
    first = tube(db, who, ["KREA"])
    results.record(db, actor=ANALYSER, measurement=measure(first, "KREA", "84"), rules=rules())
    second = tube(db, who, ["KREA"])
    later = AT + timedelta(hours=20)
    outcome = results.record(
        db, actor=ANALYSER, measurement=measure(second, "KREA", "160", at=later), rules=rules()
    )
    result = stored(db, outcome)
    assert result.status == "awaiting_review"
    assert [hold["code"] for hold in result.holds] == ["delta"]
    judgement = result.versions[-1].judgement
    assert judgement is not None and judgement["delta"]["previous"] == "84"
    assert judgement["delta"]["beyond_limit"] is True and "26.5" in judgement["delta"]["limit"]


VALUES = st.one_of(
    st.decimals(min_value=0, max_value=400, places=1, allow_nan=False),
    st.sampled_from([Decimal("41"), Decimal("250"), Decimal("9999"), Decimal("0.5")]),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    code=st.sampled_from(["NA", "K", "KREA", "HB", "CRP", "GLUK"]),
    value=VALUES,
    born=st.one_of(st.none(), st.dates(min_value=date(1925, 1, 1), max_value=date(2026, 10, 1))),
    sex=st.sampled_from(["F", "M", "U"]),
    flags=st.sampled_from(["", "N", "HH", ">", "W", "CLOT"]),
    history=st.lists(st.decimals(min_value=1, max_value=300, places=0), max_size=2),
    repeats=st.integers(min_value=1, max_value=3),
)
def test_properties_of_the_judgement(
    db: Session,
    code: str,
    value: Decimal,
    born: date | None,
    sex: str,
    flags: str,
    history: list[Decimal],
    repeats: int,
) -> None:
    who = patient(born, sex)
    for hours, earlier in enumerate(history, start=1):
        number = tube(db, who, [code])
        results.record(
            db,
            actor=ANALYSER,
            measurement=measure(number, code, str(earlier), at=AT - timedelta(hours=hours * 6)),
            rules=rules(),
        )
    number = tube(db, who, [code])
    for _ in range(repeats):  # the same result sent again changes nothing
        outcome = results.record(
            db,
            actor=ANALYSER,
            measurement=measure(number, code, str(value), instrument_flags=flags),
            rules=rules(),
        )
    result = stored(db, outcome)
    db.flush()
    verified_versions = db.scalar(
        select(func.count())
        .select_from(ResultVersion)
        .where(ResultVersion.result_id == result.id, ResultVersion.status == "verified")
    )
    # No result is verified twice.
    assert verified_versions in (0, 1)
    # A result with any hold is never autoverified; one without is (the demo tests may be).
    event("held" if result.holds else "autoverified")
    if result.holds:
        assert result.status == "awaiting_review"
    else:
        assert result.status == "verified" and result.verified_by == "autoverification v1"
    # An implausible value is never released.
    limits = demo_ruleset().for_test(code)
    implausible = limits is not None and (
        (limits.plausible_low is not None and value < limits.plausible_low)
        or (limits.plausible_high is not None and value > limits.plausible_high)
    )
    if implausible:
        assert "plausibility" in [hold["code"] for hold in result.holds]
        assert result.status != "verified" and result.flags == []
        reported = db.scalar(
            select(func.count())
            .select_from(ReportedResult)
            .where(ReportedResult.result_id == result.id)
        )
        assert reported == 0


def test_a_test_locked_by_qc_on_its_analyser_is_held_and_never_autoverified(db: Session) -> None:
    from instruments.messages import handle_raw_message
    from instruments.profiles import get_profile
    from lab.qc import service as qc
    from tests.instruments.conftest import tcp_instrument
    from tests.qc.test_astm_intake import message

    # A 1-3s on sodium's level 2 (the QC tests' own run) locks NA on the analyser "demo".
    raws = message(
        ("QC1-DEMO", [("NA", "144.2", "mmol/L"), ("K", "4.01", "mmol/L")]),
        ("QC2-DEMO", [("NA", "120.1", "mmol/L"), ("K", "6.49", "mmol/L")]),
    )
    handle_raw_message(
        db, instrument=tcp_instrument("demo"), profile=get_profile("generic"), raws=raws
    )
    assert qc.locked_tests(db, instrument="demo", test_codes=["NA", "K"]) == {"NA"}
    number = tube(db, patient(ADULT, "F"), ["NA", "K"])
    na, k = results.record_tube(
        db,
        actor=ANALYSER,
        measurements=[
            measure(number, "NA", "140", instrument="demo", flag_profile="generic"),
            measure(number, "K", "4.1", instrument="demo", flag_profile="generic"),
        ],
        rules=rules(),
    )
    held = stored(db, na)
    assert held.status == "awaiting_review"
    assert [hold["code"] for hold in held.holds] == ["qc"]
    assert stored(db, k).status == "verified"  # K is in control on that analyser


def test_an_interference_goes_to_the_record_as_a_coded_comment(db: Session) -> None:
    """A haemolysed potassium: held with `interference`, and once a person verifies it, the
    record gets the rules' coded comment (`HEM`) as a note on the observation."""
    from lab.rules import SerumIndices

    number = tube(db, patient(ADULT, "F"), ["K"])
    outcome = results.record(
        db,
        actor=ANALYSER,
        measurement=measure(number, "K", "4.1", indices=SerumIndices(h=Decimal("80"))),
        rules=rules(),
    )
    result = stored(db, outcome)
    assert [hold["code"] for hold in result.holds] == ["interference"]
    results.verify(db, actor=LEGE, result_id=result.id)
    db.flush()
    (reported,) = db.scalars(select(ReportedResult).where(ReportedResult.result_id == result.id))
    message = db.get(Hl7Message, reported.message_id)
    assert message is not None
    segments = message.raw.split(b"\r")
    observation = next(
        i for i, s in enumerate(segments) if s.startswith(b"OBX|") and b"|2823-3^" in s
    )
    note = segments[observation + 1]
    assert note.startswith(b"NTE|1||HEM: Interference: haemolysis (H) index 80 > 50"), note
