"""A result the rules refuse goes to the unmatched queue; the rest of its message is stored."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from instruments.astm.record_codec import parse_records
from instruments.config import InstrumentConfig, TcpSettings
from instruments.messages import handle_message
from instruments.profiles import get_profile
from lab.results import queries as result_queries
from lab.specimens import service as specimens
from lab.tables import UnmatchedResult
from lab.users.roles import Role
from testkit.orders import place
from tests.conftest import actor

BIO = actor(Role.TECHNICIAN)
LEGE = actor(Role.PHYSICIAN)


def _serum(db: Session, placer: str) -> str:
    order = place(db, BIO, placer=placer, tests=["NA", "K", "KREA"])
    number = next(
        s.accession_number for s in specimens.tubes_of_order(db, order.id) if s.container == "SERUM"
    )
    specimens.receive(db, actor=BIO, number=number)
    return number


def test_one_refused_result_goes_to_the_unmatched_queue_and_the_rest_is_stored(
    db: Session,
) -> None:
    number = _serum(db, "RF-1")
    lines = [
        "H|\\^&|||cobas^1|||||||P|1|20261127080000",
        "P|1",
        f"O|1|{number}||^^^NA\\^^^K\\^^^KREA|R",
        "R|1|^^^NA|140|mmol/L||N||F||||20261127080000",
        "R|2|^^^K|not a number|mmol/L||N||F||||20261127080000",
        "R|3|^^^KREA|80|umol/L||N||F||||20261127080000",
        "R|4|^^^NA|NaN|mmol/L||N||F||||20261127080100",
        "R|5|^^^KREA|1e400|umol/L||N||F||||20261127080100",
        "R|6|^^^K|-5|mmol/L||N||F||||20261127080100",
        "L|1|N",
    ]
    records = parse_records([line.encode() for line in lines])
    instrument = InstrumentConfig(
        name="demo",
        profile="generic",
        transport=TcpSettings(mode="server", port=0),
        local_codes=True,
    )
    outcome = handle_message(
        db, instrument=instrument, profile=get_profile("generic"), records=records
    )
    assert (outcome.recorded, outcome.unmatched) == (2, 4)
    stored = result_queries.for_specimen(db, number, actor=LEGE)
    assert sorted(str(r.value_numeric) for r in stored) == ["140", "80"]
    kept = db.scalars(
        select(UnmatchedResult)
        .where(UnmatchedResult.specimen_id == number)
        .order_by(UnmatchedResult.id)
    ).all()
    reasons = {row.value: row.reason for row in kept}
    assert set(reasons) == {"not a number", "NaN", "1e400", "-5"}
    assert "is not a number" in reasons["not a number"]
    assert "NaN or infinity" in reasons["NaN"]
    assert "sane range" in reasons["1e400"]
    assert "negative" in reasons["-5"]
