"""Orders: OML^O21 messages as the record sends them, and orders placed through the service."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.orders import service as orders
from lab.patients.service import Demographics
from lab.specimens import service as specimens
from lab.tables import Order
from testkit.patients import SyntheticPatient, kari

FNR_AUTHORITY = "NOR&2.16.578.1.12.4.1.4.1&ISO^FNR"  # CX-4 and CX-5 of a fødselsnummer


def _stamp(when: datetime | None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y%m%d%H%M%S%z")


def oml_o21(
    *,
    control_id: str,
    placer: str,
    patient: SyntheticPatient,
    tests: Sequence[str | tuple[str, str]],
    control: str = "NW",
    ack_modes: tuple[str, str] = ("", ""),
    extra_pid3: str = "",
    location: str | None = "MEDPOL",
    sent_at: datetime | None = None,
    collected_at: datetime | None = None,
) -> bytes:
    """OML^O21 (IHE LTW LAB-1): one ORC+OBR group per test or panel under one placer number.

    A test is a local code (coding system `L`) or (code, coding system). `ack_modes` are MSH-15
    and MSH-16 (empty: original mode); `extra_pid3` adds repetitions to PID-3; `location` is
    PV1-3 (None: no PV1). Times default to now.
    """
    accept, application = ack_modes
    name = "^".join(part for part in (patient.family, patient.given, patient.middle) if part)
    born = f"{patient.born:%Y%m%d}" if patient.born is not None else ""
    segments = [
        f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|{_stamp(sent_at)}||OML^O21^OML_O21|{control_id}|P|2.5.1"
        f"|||{accept}|{application}||UNICODE UTF-8",
        f"PID|1||{patient.fnr}^^^{FNR_AUTHORITY}{extra_pid3}||{name}||{born}|{patient.sex}",
    ]
    if location is not None:
        segments.append(f"PV1|1|O|{location}^^^STOLAV")
    collected = _stamp(collected_at)
    for number, test in enumerate(tests, start=1):
        code, system = (test, "L") if isinstance(test, str) else test
        segments += [
            f"ORC|{control}|{placer}^EPIC||||||||||9144889^Lien^Lise^^^^^^HPR",
            f"OBR|{number}|{placer}^EPIC||{code}^{code}^{system}|||{collected}",
        ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def place(
    session: Session,
    actor: Actor,
    *,
    placer: str,
    tests: Sequence[str],
    patient: Demographics | None = None,
    priority: str = "routine",
) -> Order:
    """An order through the order service (as the order page or the API place one)."""
    return orders.place(
        session,
        actor=actor,
        request=orders.OrderRequest(
            patient=patient or kari(),
            placer_order_number=placer,
            placer_namespace="HP",
            tests=[orders.TestRequest(code=code) for code in tests],
            priority=priority,
            ordering_clinician="12345^Lege^Lise",
            ordering_location="MED3",
        ),
    )


def place_and_receive(
    session: Session,
    actor: Actor,
    *,
    placer: str,
    tests: Sequence[str],
    patient: Demographics | None = None,
    receive: bool = True,
) -> dict[str, str]:
    """An order whose tubes are received at once; {test code: accession number}."""
    order = place(session, actor, placer=placer, tests=tests, patient=patient)
    by_test: dict[str, str] = {}
    for specimen in specimens.tubes_of_order(session, order.id):
        if receive:
            specimens.receive(session, actor=actor, number=specimen.accession_number)
        for ordered in specimens.tests_of(session, specimen):
            by_test[ordered.test.code] = specimen.accession_number
    return by_test
