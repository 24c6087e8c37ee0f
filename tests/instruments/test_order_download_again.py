"""Order download (push) to an analyser: a tube is pushed once, and pushed again when what was
sent no longer stands - a rerun asked for before release, or a test the last push did not carry."""

from __future__ import annotations

from sqlalchemy.orm import Session

from instruments.config import InstrumentConfig, TcpSettings
from instruments.service import download_finished, orders_to_download
from lab.results import fixes
from lab.results import service as results
from tests.results.test_service import ANALYSER, BIO, measure, serum_accession

PUSHED_TO = InstrumentConfig(
    name="push-demo",
    profile="generic",
    transport=TcpSettings(mode="server", port=0),
    local_codes=True,
    order_download=True,
)


def _pushed(db: Session, number: str) -> list[tuple[str, ...]]:
    orders = orders_to_download(db, instrument=PUSHED_TO, limit=500)
    found = [order.test_codes for order in orders if order.accession_number == number]
    download_finished(
        db,
        instrument=PUSHED_TO.name,
        accession_numbers=[order.accession_number for order in orders],
        delivered=True,
    )
    return found


def test_a_tube_is_pushed_once_and_again_after_a_rerun(db: Session) -> None:
    number = serum_accession(db, "PUSH-1", ["NA", "K"])
    assert _pushed(db, number) == [("NA", "K")]
    assert _pushed(db, number) == []  # sent, and nothing new: not again
    k = results.record(db, actor=ANALYSER, measurement=measure(number, "K", "6.9"))
    results.record(db, actor=ANALYSER, measurement=measure(number, "NA", "140"))
    assert k.result_id is not None
    assert _pushed(db, number) == []  # measured: nothing pending
    fixes.rerun(db, actor=BIO, result_id=k.result_id, reason="haemolysed? rerun")
    db.flush()
    # The pushed order was used up by the first measurement: the analyser gets K again.
    assert _pushed(db, number) == [("K",)]
    assert _pushed(db, number) == []
