"""Parse and build ASTM E1394 records: bytes in the instrument's character set <-> typed records.

`parse_record(build_record(r)) == r` for any record, and `build_record(parse_record(raw)) == raw`
for canonically escaped input (trailing empty fields are kept as received; `trim=True` leaves
them out). Each H record sets the delimiters of the records after it (LIS2-A2 7.1.2).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

from instruments.astm.codec import DEFAULT_DELIMITERS, EMPTY_FIELD, Delimiters, Field
from instruments.astm.errors import RecordBuildError, RecordError
from instruments.astm.records import (
    DEFAULT_ENCODING,
    CommentRecord,
    HeaderRecord,
    ManufacturerRecord,
    OrderRecord,
    PatientRecord,
    QueryRecord,
    Record,
    ResultRecord,
    ScientificRecord,
    TerminatorRecord,
    UnknownRecord,
)

RECORD_CLASSES: dict[str, type[Record]] = {
    cls.record_type: cls
    for cls in (
        HeaderRecord,
        PatientRecord,
        OrderRecord,
        ResultRecord,
        CommentRecord,
        QueryRecord,
        TerminatorRecord,
        ManufacturerRecord,
        ScientificRecord,
    )
}


def decode_text(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        raise RecordError(f"record is not valid {encoding}: {error}") from error


def parse_record_text(
    text: str, *, delimiters: Delimiters = DEFAULT_DELIMITERS, encoding: str = DEFAULT_ENCODING
) -> Record:
    """One record's text (without CR) to a typed record. An H record brings its own
    delimiters; others use `delimiters` (from the message's H)."""
    if text[:1] == "H":
        header_delimiters = Delimiters.from_header(text)
        rest = text[5:]
        split = header_delimiters.split_field
        fields: list[Field] = [(("H",),), ((text[2:5],),)]
        if rest:
            if rest[0] != header_delimiters.field:
                raise RecordError("H-2 must be exactly the three delimiters after the first")
            fields.extend(split(part, encoding) for part in rest[1:].split(header_delimiters.field))
        return HeaderRecord(tuple(fields), header_delimiters)
    fields_ = _split_fields(text, delimiters, encoding)
    record_class = RECORD_CLASSES.get(text[:1], UnknownRecord)
    return record_class(fields_)


def _split_fields(text: str, delimiters: Delimiters, encoding: str) -> tuple[Field, ...]:
    """The fields of a record other than H.

    This is the hot path of a busy analyser line: the common cases (empty field, plain value,
    value with components only) are handled inline, chosen once per record by which delimiters
    occur in it, because a function call per field costs more than the splitting itself.
    """
    parts = text.split(delimiters.field)
    component = delimiters.component
    if delimiters.repeat not in text and delimiters.escape not in text:
        if component not in text:
            return tuple([((part,),) if part else EMPTY_FIELD for part in parts])
        return tuple(
            [
                EMPTY_FIELD
                if not part
                else ((part,),)
                if component not in part
                else (tuple(part.split(component)),)
                for part in parts
            ]
        )
    split = delimiters.split_field
    repeat, escape = delimiters.repeat, delimiters.escape
    return tuple(
        [
            EMPTY_FIELD
            if not part
            else ((part,),)
            if repeat not in part and component not in part and escape not in part
            else split(part, encoding)
            for part in parts
        ]
    )


def parse_record(
    raw: bytes, *, delimiters: Delimiters = DEFAULT_DELIMITERS, encoding: str = DEFAULT_ENCODING
) -> Record:
    """One record's bytes (without CR) to a typed record."""
    return parse_record_text(decode_text(raw, encoding), delimiters=delimiters, encoding=encoding)


def parse_records(raws: Iterable[bytes], *, encoding: str = DEFAULT_ENCODING) -> list[Record]:
    """The records of one message; each H record sets the delimiters for those after it."""
    delimiters = DEFAULT_DELIMITERS
    records: list[Record] = []
    for raw in raws:
        record = parse_record(raw, delimiters=delimiters, encoding=encoding)
        if isinstance(record, HeaderRecord):
            delimiters = record.delimiters
        records.append(record)
    return records


def build_record_text(
    record: Record, *, delimiters: Delimiters = DEFAULT_DELIMITERS, trim: bool = False
) -> str:
    """A record as text (without CR); `trim` leaves out trailing empty fields."""
    fields = record.fields
    if trim:
        end = len(fields)
        while end > 1 and fields[end - 1] == EMPTY_FIELD:
            end -= 1
        fields = fields[:end]
    if isinstance(record, HeaderRecord):
        own = record.delimiters
        joined = own.field.join(map(own.join_field, fields[2:]))
        return "H" + own.field + own.definition + (own.field + joined if len(fields) > 2 else "")
    return delimiters.field.join(map(delimiters.join_field, fields))


def build_record(
    record: Record,
    *,
    delimiters: Delimiters = DEFAULT_DELIMITERS,
    encoding: str = DEFAULT_ENCODING,
    trim: bool = False,
) -> bytes:
    text = build_record_text(record, delimiters=delimiters, trim=trim)
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as error:
        raise RecordBuildError(
            f"{text[error.start : error.end]!r} cannot be written in {encoding}"
        ) from error


def build_records(
    records: Iterable[Record], *, encoding: str = DEFAULT_ENCODING, trim: bool = False
) -> list[bytes]:
    """The bytes of a message's records; each H record sets the delimiters after it."""
    delimiters = DEFAULT_DELIMITERS
    out: list[bytes] = []
    for record in records:
        if isinstance(record, HeaderRecord):
            delimiters = record.delimiters
        out.append(build_record(record, delimiters=delimiters, encoding=encoding, trim=trim))
    return out


def looks_like_utf8(raws: Iterable[bytes], encoding: str) -> bool:
    """True when bytes meant to be read in a one-byte character set (ISO 8859-1, Windows-1252)
    are valid UTF-8 with characters beyond ASCII: read as `encoding`, `æ` would become `Ã¦`.

    Text in ISO 8859-1 with letters beyond ASCII is almost never valid UTF-8 (`æ` is a lone
    0xE6), so this tells a capture or a line in the wrong character set from a right one.
    """
    if codecs.lookup(encoding).name == "utf-8":
        return False
    data = b"".join(raws)
    if data.isascii():
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
