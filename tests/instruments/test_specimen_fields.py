"""Where the specimen ID is (`specimen_fields`: `O-3`, `O-4.3`, ...), read through the record
codec, and the check that tells a UTF-8 message from one in ISO 8859-1: properties over any
record layout and any Norwegian text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instruments.astm.record_codec import build_record, looks_like_utf8, parse_record
from instruments.astm.records import OrderRecord, QueryRecord
from instruments.config import ConfigError, parse_config
from instruments.profiles import FieldRef, get_profile

# What a specimen ID may look like on a label: digits and letters, maybe padded.
SPECIMEN = st.text(alphabet="0123456789ABCDEFXYZ", min_size=1, max_size=20)
OTHER = st.text(alphabet="0123456789ABC -", max_size=6)


@settings(max_examples=300)
@given(
    specimen=SPECIMEN,
    field=st.integers(min_value=3, max_value=6),
    component=st.integers(min_value=1, max_value=5),
    padding=st.integers(min_value=0, max_value=12),
    others=st.lists(OTHER, min_size=5, max_size=5),
)
def test_a_specimen_id_is_read_back_from_wherever_it_was_written(
    specimen: str, field: int, component: int, padding: int, others: list[str]
) -> None:
    components = [*others[: component - 1], " " * padding + specimen, *others[component - 1 :]]
    record = OrderRecord.create(sequence=1).with_field(field, components)
    wire = parse_record(build_record(record))  # through the codec, as it arrives
    ref = FieldRef.parse(f"O-{field}.{component}")
    assert ref.read(wire) == specimen
    assert str(FieldRef.parse(str(ref))) == str(ref)
    profile = get_profile("generic")
    # First found wins: an empty preferred field falls through to the next.
    assert profile.specimen_id(wire, [FieldRef.parse("O-9"), ref]) == specimen
    assert FieldRef.parse("Q-3.2").read(wire) == ""  # a field of another record type


def test_sysmex_reads_o4_and_q3_when_o3_and_q32_are_empty() -> None:
    xn = get_profile("sysmex_xn")
    order = parse_record(b"O|1||^^          000777^B|^^^^WBC")
    assert isinstance(order, OrderRecord) and xn.specimen_id(order) == "000777"
    assert get_profile("generic").specimen_id(order) == ""
    query = parse_record(b"Q|1|2^1^   000777^B||ALL||||||||O")
    assert isinstance(query, QueryRecord) and xn.specimen_id(query) == "000777"
    both = parse_record(b"O|1|123|^^777^B")
    assert xn.specimen_id(both) == "123"  # O-3 first


@pytest.mark.parametrize("bad", ["O3", "O-1", "O-3.0", "O-3.2.1", "", "O-100", "O-x"])
def test_a_field_reference_that_is_not_one_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        FieldRef.parse(bad)


def test_the_instruments_file_checks_specimen_fields() -> None:
    def one(fields: object) -> object:
        entry = {"name": "a", "profile": "generic", "tcp": {"port": 0}, "specimen_fields": fields}
        return parse_config({"instrument": [entry]})

    with pytest.raises(ConfigError, match="specimen_fields"):
        one(["O-3", "O-4,3"])
    with pytest.raises(ConfigError, match="O or Q"):
        one(["R-3"])
    with pytest.raises(ConfigError, match="specimen_fields"):
        one([])
    with pytest.raises(ConfigError, match="time zone"):
        parse_config(
            {
                "instrument": [
                    {"name": "a", "profile": "generic", "tcp": {"port": 0}, "timezone": "Oslo"}
                ]
            }
        )
    (config,) = one(["o-4.3", "O-3"])  # type: ignore[misc]
    assert [str(ref) for ref in config.specimen_fields] == ["O-4.3", "O-3"]


NORWEGIAN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ^|ÆØÅæøåéüÖ-", min_size=1, max_size=60)


@settings(max_examples=300)
@given(text=NORWEGIAN)
def test_norwegian_text_in_latin1_is_never_taken_for_utf8_and_in_utf8_always_is(
    text: str,
) -> None:
    assert not looks_like_utf8([text.encode("latin-1")], "latin-1")
    assert not looks_like_utf8([text.encode("cp1252")], "cp1252")
    assert not looks_like_utf8([text.encode("utf-8")], "utf-8")  # read as UTF-8: nothing to say
    assert looks_like_utf8([text.encode("utf-8")], "latin-1") == (not text.isascii())
