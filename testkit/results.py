"""Result reports (what an ORU^R01 carries) for the HL7 codec tests and benchmarks.

The demo catalog's codes: local code, LOINC (from the LOINC table, as lab/catalog/demo_catalog.toml
names them) and UCUM unit. Patients and values are synthetic.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from lab.hl7.codec.types import (
    AbnormalFlag,
    CodedValue,
    EntityId,
    Observation,
    ObservationStatus,
    Patient,
    PatientIdentifier,
    PersonName,
    Provider,
    ResultReport,
    ResultStatus,
    Sex,
    ValueType,
)

OSLO_WINTER = timezone(timedelta(hours=1))

INGRID = Patient(
    identifiers=(
        PatientIdentifier(
            id="15038524094",
            assigning_authority="NOR",
            assigning_authority_oid="2.16.578.1.12.4.1.4.1",
            identifier_type="FNR",
        ),
        PatientIdentifier(id="8000123456", assigning_authority="HMN", identifier_type="PI"),
    ),
    name=PersonName(family="Sætre", given="Ingrid", middle="Åse"),
    birth_date=date(1985, 3, 15),
    sex=Sex.FEMALE,
)
AANTE = Patient(
    identifiers=(
        PatientIdentifier(id="02116235164", assigning_authority="NOR", identifier_type="FNR"),
    ),
    name=PersonName(family="Čáhppeš-Ŋuolga", given="Áŋte Ŧuolbmi", middle="Đuvvá"),
    birth_date=date(1962, 11, 2),
    sex=Sex.MALE,
)
VERIFIER = Provider(id="5551212", family="Ødegård", given="Tove", assigning_authority="HPR")
COLLECTED = datetime(2026, 11, 27, 8, 0, tzinfo=OSLO_WINTER)

# The demo catalog (lab/catalog/demo_catalog.toml): local code, LOINC, unit.
CATALOG = {
    "HB": ("718-7", "Hemoglobin", "g/dL"),
    "LPK": ("6690-2", "Leukocytes", "10*9/L"),
    "TPK": ("777-3", "Platelets", "10*9/L"),
    "NA": ("2951-2", "Sodium", "mmol/L"),
    "K": ("2823-3", "Potassium", "mmol/L"),
    "KREA": ("14682-9", "Creatinine", "umol/L"),
    "CRP": ("1988-5", "C-reactive protein", "mg/L"),
    "GLUK": ("14749-6", "Glucose", "mmol/L"),
}


def observation(
    local_code: str,
    value: Decimal | str | CodedValue | None,
    *,
    status: ObservationStatus = ObservationStatus.FINAL,
    flags: tuple[AbnormalFlag, ...] = (),
    value_type: ValueType = ValueType.NUMERIC,
    reference_range: str = "",
    comments: tuple[str, ...] = (),
) -> Observation:
    loinc, name, unit = CATALOG[local_code]
    return Observation(
        loinc=CodedValue(code=loinc, text=name, coding_system="LN"),
        local=CodedValue(code=local_code, text=name, coding_system="L"),
        value_type=value_type,
        value=value,
        status=status,
        unit=unit if value_type is ValueType.NUMERIC else "",
        reference_range=reference_range,
        abnormal_flags=flags,
        observed_at=COLLECTED,
        responsible_observer=VERIFIER,
        analysed_at=COLLECTED + timedelta(minutes=40),
        comments=comments,
    )


def report(
    observations: tuple[Observation, ...],
    *,
    status: ResultStatus = ResultStatus.FINAL,
    patient: Patient = INGRID,
    control_id: str = "LAB-000001",
    comments: tuple[str, ...] = (),
) -> ResultReport:
    return ResultReport(
        control_id=control_id,
        created_at=datetime(2026, 11, 27, 10, 2, 3, tzinfo=UTC),
        sending_application="LAB",
        sending_facility="STOLAV",
        receiving_application="EPIC",
        receiving_facility="HMN",
        patient=patient,
        placer_order_number=EntityId(id="HMN-ORD-1001", namespace="EPIC"),
        filler_order_number=EntityId(id="26-000123", namespace="LAB"),
        service=CodedValue(code="718-7", text="Hemoglobin", coding_system="LN"),
        alternate_service=CodedValue(code="HB", text="Hemoglobin", coding_system="L"),
        ordering_provider=Provider(
            id="9144889", family="Lien", given="Lise", assigning_authority="HPR"
        ),
        collected_at=COLLECTED,
        reported_at=datetime(2026, 11, 27, 10, 1, tzinfo=UTC),
        result_status=status,
        observations=observations,
        comments=comments,
    )


def ten_results() -> ResultReport:
    """An ORU^R01 with 10 OBX, as in the benchmark."""
    codes = ["HB", "LPK", "TPK", "NA", "K", "KREA", "CRP", "GLUK", "HB", "CRP"]
    values = ["13.9", "7.2", "245", "139", "4.1", "78", "3", "5.4", "14.1", "12"]
    return report(
        tuple(
            observation(code, Decimal(value), reference_range="1-100", flags=(AbnormalFlag.NORMAL,))
            for code, value in zip(codes, values, strict=True)
        ),
        comments=("Prøven er lett hemolysert.",),
    )
