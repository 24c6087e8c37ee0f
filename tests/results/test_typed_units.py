"""A value typed by hand in a unit convertible to the catalog's is converted as an analyser's
is, the value and unit as typed kept; a unit that cannot be converted is refused on its field."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.orm import Session

from lab.errors import InvalidInput
from lab.results import service as results
from lab.results.queries import stored
from lab.results.service import Measurement
from lab.users.roles import Role
from tests.conftest import actor
from tests.results.test_service import serum_accession

BIO = actor(Role.TECHNICIAN)


def typed(number: str, code: str, value: str, unit: str) -> Measurement:
    return Measurement(
        accession_number=number, test_code=code, value=value, unit=unit, instrument="manual"
    )


def test_a_value_typed_in_a_convertible_unit_is_converted_and_the_original_kept(
    db: Session,
) -> None:
    number = serum_accession(db, "U-1", ["KREA", "CRP"])
    outcome = results.record(db, actor=BIO, measurement=typed(number, "KREA", "0.084", "mmol/L"))
    result = stored(db, outcome)
    assert result.value_numeric == Decimal("84") and result.unit == "umol/L"
    (measured,) = result.measurements
    assert (measured.original_value, measured.original_unit) == ("0.084", "mmol/L")
    # The same unit written otherwise needs no conversion and keeps no original.
    same = results.record(db, actor=BIO, measurement=typed(number, "CRP", "12", "mg/l"))
    assert stored(db, same).measurements[0].original_unit in ("", "mg/l")
    assert stored(db, same).value_numeric == Decimal("12")


def test_a_unit_that_cannot_be_converted_is_refused_on_its_field(db: Session) -> None:
    number = serum_accession(db, "U-2", ["KREA"])
    with pytest.raises(InvalidInput) as refused:
        results.record(db, actor=BIO, measurement=typed(number, "KREA", "0.95", "mg/dL"))
    (problem,) = refused.value.problems
    assert problem.field == "unit" and problem.code == "unit_mismatch"
    assert problem.params == {"code": "KREA", "unit": "umol/L", "given": "mg/dL"}
