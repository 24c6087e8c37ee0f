"""Units compared as UCUM units (lab/catalog/units.py) and the catalog's units checked as UCUM
when the catalog is loaded."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from lab.catalog import service as catalog
from lab.catalog import units
from lab.catalog.rules import snapshot
from lab.catalog.schemas import LabTestIn
from lab.errors import InvalidInput
from lab.results import queries
from lab.results import service as results
from lab.users.roles import Role
from testkit.orders import place_and_receive
from tests.conftest import actor

ADMIN = actor(Role.ADMIN)


@pytest.mark.parametrize(
    ("sent", "catalog"),
    [
        ("10*3/uL", "10*9/L"),
        ("umol/L", "umol/L"),
        ("µmol/L", "umol/L"),  # the micro sign, as analysers print it
        ("μmol/L", "umol/L"),  # the Greek mu
        ("umol/l", "umol/L"),  # UCUM's l and L are both the litre
        ("10*6/mL", "10*9/L"),
    ],
)
def test_the_same_quantity_is_taken_as_sent_with_the_original_kept(sent: str, catalog: str) -> None:
    assert units.same_unit(sent, catalog) and units.same_unit(catalog, sent)
    reading = units.in_catalog_unit("5.2", sent, catalog_unit=catalog)
    assert isinstance(reading, units.Reading)
    assert (reading.value, reading.unit) == ("5.2", catalog)
    if sent != catalog:
        assert (reading.original_value, reading.original_unit) == ("5.2", sent)


@pytest.mark.parametrize(
    ("value", "sent", "catalog", "expected"),
    [
        ("135", "g/L", "g/dL", "13.5"),
        ("0.080", "mmol/L", "umol/L", "80"),
        ("<0.5", "mmol/L", "umol/L", "<500"),
        ("5,2", "10*3/mL", "10*9/L", "0.0052"),
        ("1.2", "[IU]/L", "m[IU]/L", "1200"),
    ],
)
def test_a_convertible_unit_is_converted_and_the_original_kept(
    value: str, sent: str, catalog: str, expected: str
) -> None:
    reading = units.in_catalog_unit(value, sent, catalog_unit=catalog)
    assert isinstance(reading, units.Reading)
    assert (reading.value, reading.unit) == (expected, catalog)
    assert (reading.original_value, reading.original_unit) == (value, sent)


def test_the_catalog_may_show_a_unit_ucum_writes_otherwise() -> None:
    # TSH: mIU/L as agreed with the record, m[IU]/L in UCUM.
    reading = units.in_catalog_unit("2.1", "m[IU]/L", catalog_unit="mIU/L", catalog_ucum="m[IU]/L")
    assert isinstance(reading, units.Reading)
    assert (reading.value, reading.unit, reading.original_unit) == ("2.1", "mIU/L", "m[IU]/L")
    same = units.in_catalog_unit("2.1", "mIU/L", catalog_unit="mIU/L", catalog_ucum="m[IU]/L")
    assert same == units.Reading(value="2.1", unit="mIU/L")


@pytest.mark.parametrize(
    ("value", "sent", "catalog", "words"),
    [
        ("1.0", "mg/dL", "umol/L", "cannot be converted"),  # mass is not substance
        ("1.0", "x10^3/uL", "10*9/L", "not a UCUM unit"),
        ("90", "mL/min", "mL/min/{1.73_m2}", "annotation"),  # UCUM would say same: we do not
        ("pos", "g/L", "g/dL", "not a number"),
    ],
)
def test_what_cannot_be_read_in_the_catalog_unit_says_why(
    value: str, sent: str, catalog: str, words: str
) -> None:
    reading = units.in_catalog_unit(value, sent, catalog_unit=catalog)
    assert isinstance(reading, units.NotConvertible)
    assert words in reading.reason


@settings(max_examples=200, deadline=None)
@given(
    amount=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("99999"), places=3),
    pair=st.sampled_from(
        [("g/L", "g/dL"), ("mmol/L", "umol/L"), ("10*3/uL", "10*9/L"), ("mg/L", "mg/dL")]
    ),
)
def test_converting_there_and_back_gives_the_value_again(
    amount: Decimal, pair: tuple[str, str]
) -> None:
    there = units.in_catalog_unit(str(amount), pair[0], catalog_unit=pair[1])
    assert isinstance(there, units.Reading)
    back = units.in_catalog_unit(there.value, pair[1], catalog_unit=pair[0])
    assert isinstance(back, units.Reading)
    assert Decimal(back.value) == amount
    assert units.factor(*pair) == 1 / units.factor(pair[1], pair[0])  # type: ignore[operator]


def test_the_demo_catalog_units_are_ucum() -> None:
    document = tomllib.loads(
        (Path(catalog.__file__).with_name("demo_catalog.toml")).read_text(encoding="utf-8")
    )
    for test in document["test"]:
        if test.get("unit"):
            assert units.ucum_problem(test.get("ucum") or test["unit"]) is None, test["code"]


def _test(**changes: object) -> LabTestIn:
    fields: dict[str, object] = {
        "code": "UCUMX",
        "name_nb": "Enhetsprøve",
        "name_en": "Unit test",
        "specimen_type": "SER",
        "container": "SERUM",
        "unit": "mmol/L",
    }
    fields.update(changes)
    return LabTestIn.model_validate(fields)


def test_loading_refuses_a_unit_that_is_not_ucum_with_a_clear_message(db: Session) -> None:
    with pytest.raises(InvalidInput) as refused:
        catalog.save_test(db, actor=ADMIN, data=_test(unit="mmol/ltr"))
    assert "UCUMX" in refused.value.message and "not a UCUM unit" in refused.value.message
    assert refused.value.problems[0].field == "unit"
    with pytest.raises(InvalidInput) as refused:
        catalog.save_test(db, actor=ADMIN, data=_test(unit="mIU/L"))
    assert "give its UCUM code as ucum" in refused.value.message
    with pytest.raises(InvalidInput) as refused:
        catalog.save_test(db, actor=ADMIN, data=_test(unit="mIU/L", ucum="mIU/L"))
    assert refused.value.problems[0].field == "ucum"
    saved = catalog.save_test(db, actor=ADMIN, data=_test(unit="mIU/L", ucum="m[IU]/L"))
    assert (saved.unit, saved.ucum) == ("mIU/L", "m[IU]/L")
    assert snapshot(db).by_code["UCUMX"].ucum == "m[IU]/L"


def test_a_catalog_file_with_a_typo_in_a_unit_does_not_load(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[[test]]\ncode = "UCUMY"\nname_nb = "x"\nname_en = "x"\nspecimen_type = "SER"\n'
        'container = "SERUM"\nunit = "mmol/LL"\n',
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput, match="UCUMY: 'mmol/LL' is not a UCUM unit"):
        catalog.load_catalog_file(db, actor=ADMIN, path=path)
    assert snapshot(db).by_code["TSH"].ucum == "m[IU]/L"  # the demo catalog as loaded


def test_a_result_typed_in_the_same_unit_written_otherwise_is_taken(db: Session) -> None:
    """The keyboard and the API compare units through the same module as the analysers: the
    same unit written otherwise is the catalog's; one that needs a factor is converted with the
    value as typed kept; one of another kind of quantity is refused."""
    tubes = place_and_receive(db, ADMIN, placer="UCUM-KB1", tests=["KREA", "TSH"])
    technician = actor(Role.TECHNICIAN)
    typed = [("KREA", "80", "umol/l"), ("KREA", "81", "µmol/L"), ("TSH", "2.1", "mIU/L")]
    for code, value, unit in typed:
        results.record(
            db,
            actor=technician,
            measurement=results.Measurement(
                accession_number=tubes[code], test_code=code, value=value, unit=unit
            ),
        )
    results.record(
        db,
        actor=technician,
        measurement=results.Measurement(
            accession_number=tubes["KREA"], test_code="KREA", value="0.079", unit="mmol/L"
        ),
    )
    with pytest.raises(InvalidInput, match="cannot be converted"):
        results.record(
            db,
            actor=technician,
            measurement=results.Measurement(
                accession_number=tubes["KREA"], test_code="KREA", value="0.9", unit="mg/dL"
            ),
        )
    krea = snapshot(db).by_code["KREA"].id
    (stored,) = [
        r for r in queries.for_specimen(db, tubes["KREA"], actor=ADMIN) if r.test_id == krea
    ]
    assert (stored.unit, str(stored.value_numeric)) == ("umol/L", "79")
    assert (stored.measurements[-1].original_value, stored.measurements[-1].original_unit) == (
        "0.079",
        "mmol/L",
    )


@pytest.mark.parametrize(
    ("given", "expected", "same"),
    [
        ("10*3/uL", "10*9/L", True),  # a Sysmex control in its own unit
        ("µmol/L", "umol/L", True),
        ("UMOL/L", "umol/L", True),  # the QC check's own leniency on case stays
        ("mg/dL", "umol/L", False),
        ("g/L", "g/dL", False),  # a factor: not the same unit for a control's value
    ],
)
def test_qc_compares_a_controls_unit_through_the_same_module(
    given: str, expected: str, same: bool
) -> None:
    from lab.qc.materials import same_unit

    assert same_unit(given, expected) is same
