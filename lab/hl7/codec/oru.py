"""ORU^R01 (IHE LTW LAB-3, HL7 v2.5.1) built from a ResultReport, without I/O.

Structure (ORU_R01): MSH, PID, ORC, OBR, NTE*, {OBX, NTE*}*. One message per order (or order part
released). Choices, with the clause they follow:
- MSH-18 `UNICODE UTF-8`, MSH-12 `2.5.1`, MSH-9 `ORU^R01^ORU_R01`; MSH-10 comes from the caller.
- ORC-1 `RE` ("observations to follow", table 0119) with the placer and filler numbers.
- OBR-25 result status from table 0123: F final, C corrected, X "no results available; order
  canceled". OBR-22 is when that status was reached (required by LTW LAB-3 for results).
- OBX-3 carries LOINC (`LN`) as the identifier and the lab's code as the alternate identifier
  (OBX-3.4-6), so receivers that know only one of them can still file the result.
- OBX-11 from table 0085 (v2.5.1): F final, C correction of a final result; a cancelled test is
  sent as X, "results cannot be obtained for this observation", with OBX-2 and OBX-5 empty.
  D ("deletes the OBX record") is reserved for withdrawing a result that was sent before, and
  W for one posted to the wrong patient: neither describes a test that was never done.
- OBX-6 `unit^unit^UCUM`; OBX-7 reference range as text; OBX-8 flags from table 0078 (repeat).
- SPM (optional, after the observations) names the specimen; a rejected one carries SPM-21,
  the reject reason from table 0490 (`RH^Hemolysis^HL70490`), or only its text when no code of
  that table applies.
"""

from __future__ import annotations

from decimal import Decimal

from lab.hl7.codec.charsets import UTF_8
from lab.hl7.codec.er7 import FieldValue, Message, Repeated, build_message
from lab.hl7.codec.errors import LocalProtocolError
from lab.hl7.codec.escapes import NULL
from lab.hl7.codec.timestamps import format_date, format_timestamp
from lab.hl7.codec.types import (
    SPECIMEN_REJECT_REASONS_0490,
    CodedValue,
    EntityId,
    Observation,
    ObservationStatus,
    Patient,
    PersonName,
    Provider,
    ReportedSpecimen,
    ResultReport,
    Sex,
    ValueType,
)

VERSION = "2.5.1"
UCUM = "UCUM"
_NO_VALUE_STATUSES = frozenset(
    {ObservationStatus.CANNOT_BE_OBTAINED, ObservationStatus.DELETED, ObservationStatus.WRONG}
)

Segments = list[tuple[str, dict[int, FieldValue]]]


def build_oru(report: ResultReport) -> Message:
    """The ORU^R01 for one report. LocalProtocolError for a report HL7 cannot express."""
    segments: Segments = [
        (
            "MSH",
            {
                3: report.sending_application,
                4: report.sending_facility,
                5: report.receiving_application,
                6: report.receiving_facility,
                7: format_timestamp(report.created_at),
                9: ("ORU", "R01", "ORU_R01"),
                10: report.control_id,
                11: report.processing_id,
                12: VERSION,
                18: UTF_8,
            },
        ),
        ("PID", _pid(report.patient)),
        ("ORC", _orc(report)),
        ("OBR", _obr(report)),
    ]
    segments += _notes(report.comments)
    for number, observation in enumerate(report.observations, start=1):
        segments.append(("OBX", _obx(number, observation)))
        segments += _notes(observation.comments)
    if report.specimen is not None:
        segments.append(("SPM", _spm(report.specimen)))
    return build_message(segments)


def _spm(specimen: ReportedSpecimen) -> dict[int, FieldValue]:
    """SPM (ORU_R01 SPECIMEN group, after the observations): SPM-2 our accession number as the
    filler assigned identifier, SPM-4 the specimen type (table 0487), SPM-17/18 collected and
    received, and for a rejected specimen SPM-20 `N` (not available) and SPM-21 the reason:
    a table 0490 code with the table's text and the lab's words as original text (CWE.9), or
    the lab's words alone (CWE.2) when no 0490 code applies."""
    fields: dict[int, FieldValue] = {
        1: "1",
        2: ("", (specimen.accession_number, specimen.filler_namespace)),
        4: (specimen.specimen_type, "", "HL70487"),
    }
    if specimen.collected_at is not None:
        fields[17] = format_timestamp(specimen.collected_at)
    if specimen.received_at is not None:
        fields[18] = format_timestamp(specimen.received_at)
    if specimen.rejected:
        fields[20] = "N"
        if specimen.reject_reason is not None:
            if specimen.reject_reason not in SPECIMEN_REJECT_REASONS_0490:
                raise LocalProtocolError(f"{specimen.reject_reason!r} is not in table 0490")
            # CWE.2 the table's text, CWE.9 (original text) the lab's own words.
            fields[21] = (
                specimen.reject_reason,
                SPECIMEN_REJECT_REASONS_0490[specimen.reject_reason],
                "HL70490",
                *([""] * 5),
                specimen.reject_text,
            )
        else:
            fields[21] = ("", specimen.reject_text)
    return fields


def _pid(patient: Patient) -> dict[int, FieldValue]:
    if not patient.identifiers:
        raise LocalProtocolError("PID-3 needs at least one patient identifier")
    fields: dict[int, FieldValue] = {
        1: "1",
        3: Repeated(
            tuple(
                (
                    identifier.id,
                    "",
                    "",
                    (
                        identifier.assigning_authority,
                        identifier.assigning_authority_oid,
                        "ISO" if identifier.assigning_authority_oid else "",
                    ),
                    identifier.identifier_type,
                )
                for identifier in patient.identifiers
            )
        ),
    }
    if isinstance(patient.name, PersonName):
        fields[5] = (
            _plain(patient.name.family),
            _plain(patient.name.given),
            _plain(patient.name.middle),
        )
    if patient.birth_date is not None and patient.birth_date is not NULL:
        fields[7] = format_date(patient.birth_date)
    if isinstance(patient.sex, Sex):
        fields[8] = patient.sex.value
    return fields


def _plain(value: object) -> str:
    return value if isinstance(value, str) else ""


def _entity(entity: EntityId) -> FieldValue:
    return (entity.id, entity.namespace, entity.universal_id, entity.universal_id_type)


def _provider(person: Provider | None) -> FieldValue:
    if person is None:
        return ""
    return (person.id, person.family, person.given, "", "", "", "", "", person.assigning_authority)


def _coded(value: CodedValue) -> tuple[str, str, str]:
    return (value.code, value.text, value.coding_system)


def _orc(report: ResultReport) -> dict[int, FieldValue]:
    return {
        1: "RE",
        2: _entity(report.placer_order_number),
        3: _entity(report.filler_order_number),
        12: _provider(report.ordering_provider),
    }


def _obr(report: ResultReport) -> dict[int, FieldValue]:
    service: tuple[str, ...] = _coded(report.service)
    if report.alternate_service is not None:
        service += _coded(report.alternate_service)
    fields: dict[int, FieldValue] = {
        1: "1",
        2: _entity(report.placer_order_number),
        3: _entity(report.filler_order_number),
        4: service,
        16: _provider(report.ordering_provider),
        22: format_timestamp(report.reported_at),
        25: report.result_status.value,
    }
    if report.collected_at is not None:
        fields[7] = format_timestamp(report.collected_at)
    if report.specimen_action:
        fields[11] = report.specimen_action  # table 0065 (a test the lab added)
    return fields


def _value(observation: Observation) -> FieldValue:
    value = observation.value
    if observation.value_type is ValueType.NUMERIC:
        if not isinstance(value, Decimal) or not value.is_finite():
            raise LocalProtocolError(f"NM result {value!r} is not a finite Decimal")
        # NM: optional sign, digits, optional decimal point (v2.5.1 section 2.A.47); never
        # an exponent, never a decimal comma.
        return format(value, "f")
    if observation.value_type is ValueType.CODED:
        if not isinstance(value, CodedValue):
            raise LocalProtocolError("a CWE result needs a CodedValue")
        return _coded(value)
    if not isinstance(value, str):
        raise LocalProtocolError("an ST result needs text")
    return value


def _obx(number: int, observation: Observation) -> dict[int, FieldValue]:
    fields: dict[int, FieldValue] = {
        1: str(number),
        3: _coded(observation.loinc) + _coded(observation.local),
        11: observation.status.value,
    }
    if observation.status in _NO_VALUE_STATUSES:
        if observation.value is not None:
            raise LocalProtocolError(f"OBX-11 {observation.status.value} is sent without a value")
    else:
        if observation.value is None:
            raise LocalProtocolError(f"OBX-11 {observation.status.value} needs a value")
        fields[2] = observation.value_type.value
        fields[5] = _value(observation)
    if observation.unit:
        fields[6] = (observation.unit, observation.unit, UCUM)
    if observation.reference_range:
        fields[7] = observation.reference_range
    if observation.abnormal_flags:
        fields[8] = Repeated(tuple(flag.value for flag in observation.abnormal_flags))
    if observation.observed_at is not None:
        fields[14] = format_timestamp(observation.observed_at)
    if observation.responsible_observer is not None:
        fields[16] = _provider(observation.responsible_observer)
    if observation.analysed_at is not None:
        fields[19] = format_timestamp(observation.analysed_at)
    return fields


def _notes(comments: tuple[str, ...]) -> Segments:
    # NTE-3 is FT: line breaks travel as \.br\ (escapes.py).
    return [("NTE", {1: str(number), 3: text}) for number, text in enumerate(comments, start=1)]
