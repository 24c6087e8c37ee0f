"""ER7 codec: HL7 v2 messages as bytes in, a small typed model out, and back (no I/O).

The parser is a plain splitter: it decodes the bytes in the character set named by MSH-18,
splits segments and fields, and checks what makes a message readable (MSH first, segment IDs,
escape sequences) so that a broken message raises `MessageStructureError` at once. Components,
subcomponents and escapes are resolved when a field is read, which keeps parsing cheap for
messages whose every field is never looked at.

Positions are HL7's own, 1-based: `seg.field(3)` is PID-3. In MSH the field separator itself is
MSH-1 and the encoding characters are MSH-2 (v2.5.1 section 2.15.9), so MSH-9 is `field(9)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

from lab.hl7.codec.charsets import (
    charset_codec,
    charset_of,
    decode_message_bytes,
    encode_message_text,
)
from lab.hl7.codec.errors import ErrorCode, LocalProtocolError, MessageStructureError, Problem
from lab.hl7.codec.escapes import (
    NULL,
    STANDARD_DELIMITERS,
    Delimiters,
    EscapeError,
    Null,
    check_escapes,
    escape,
    unescape,
)

__all__ = [
    "NULL",
    "STANDARD_DELIMITERS",
    "Delimiters",
    "Field",
    "FieldValue",
    "Message",
    "Null",
    "Repeated",
    "Segment",
    "build_message",
    "parse_message",
    "parse_text",
]

Leaf = str | Null
"""One subcomponent: text, or NULL for HL7's `""`."""
ComponentValue = Leaf | Sequence[Leaf]
"""A component: one leaf, or its subcomponents."""
RepetitionValue = Leaf | Sequence[ComponentValue]
"""One occurrence of a field: one leaf, or its components."""


@dataclass(frozen=True, slots=True)
class Repeated:
    """A field sent with several repetitions (PID-3 with two identifiers, OBX-8 flags)."""

    values: tuple[RepetitionValue, ...]


FieldValue = RepetitionValue | Repeated
Tree = list[list[list[Leaf]]]
"""A field read fully: repetitions > components > subcomponents."""


def _leaf_value(wire: str, delimiters: Delimiters, codec: str) -> Leaf:
    if wire == '""':
        return NULL
    return unescape(wire, delimiters, codec)


Parts = list[list[list[str]]]
"""A field's wire text split into repetitions > components > subcomponents, not unescaped."""


class Field:
    """One field as sent, all repetitions, read on demand: split once, at the first read, and
    each value unescaped as it is read."""

    # A plain slotted class rather than a frozen dataclass: frozen dataclasses pay for
    # object.__setattr__ in __init__.
    __slots__ = ("_parts", "codec", "delimiters", "wire")

    def __init__(self, wire: str, delimiters: Delimiters, codec: str) -> None:
        self.wire = wire
        self.delimiters = delimiters
        self.codec = codec
        self._parts: Parts | str | None = None

    def _split(self) -> Parts | str:
        """The parts of the field, or its wire text when it holds no delimiter (most fields:
        one value, or nothing), which needs no lists."""
        d = self.delimiters
        wire, sub, component, repetition = self.wire, d.subcomponent, d.component, d.repetition
        if component not in wire and repetition not in wire and sub not in wire:
            self._parts = wire
            return wire
        parts = self._parts = [
            [part.split(sub) for part in one.split(component)] for one in wire.split(repetition)
        ]
        return parts

    def __repr__(self) -> str:
        return f"Field({self.wire!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Field):
            return NotImplemented
        return (self.wire, self.delimiters, self.codec) == (
            other.wire,
            other.delimiters,
            other.codec,
        )

    def __hash__(self) -> int:
        return hash((self.wire, self.delimiters, self.codec))

    @property
    def is_empty(self) -> bool:
        """Not sent: "no change" in an update."""
        return self.wire == ""

    @property
    def is_null(self) -> bool:
        """Sent as `""`: "delete the stored value"."""
        return self.wire == '""'

    def repetitions(self) -> list[Field]:
        if self.wire == "":
            return []
        return [
            Field(part, self.delimiters, self.codec)
            for part in self.wire.split(self.delimiters.repetition)
        ]

    def value(self, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> Leaf:
        """One subcomponent ("" past the end of what was sent; NULL for `""`)."""
        parts = self._parts
        if parts is None:
            parts = self._split()
        if isinstance(parts, str):
            if component != 1 or subcomponent != 1 or repetition != 1:
                return ""
            wire = parts
        else:
            try:
                wire = parts[repetition - 1][component - 1][subcomponent - 1]
            except IndexError:
                return ""
        if wire == '""':
            return NULL
        escape = self.delimiters.escape
        return unescape(wire, self.delimiters, self.codec) if escape in wire else wire

    def text(self, component: int = 1, subcomponent: int = 1, repetition: int = 1) -> str:
        """Like `value` with the HL7 null read as the empty string."""
        leaf = self.value(component, subcomponent, repetition)
        return "" if leaf is NULL else leaf

    def tree(self) -> Tree:
        d = self.delimiters
        wire = self.wire
        if wire == "":
            return []
        if d.escape not in wire and '""' not in wire:
            # Nothing to unescape and no null: splitting is all there is to do.
            sub = d.subcomponent
            split: list[list[list[str]]] = [
                [comp.split(sub) for comp in rep.split(d.component)]
                for rep in wire.split(d.repetition)
            ]
            return cast(Tree, split)  # list is invariant; str leaves are valid Leaf values
        return [
            [
                [_leaf_value(sub, d, self.codec) for sub in comp.split(d.subcomponent)]
                for comp in rep.split(d.component)
            ]
            for rep in self.wire.split(d.repetition)
        ]


class Segment:
    """One segment. `wire_fields[n]` is the wire text of field n (index 0: the segment ID)."""

    __slots__ = ("_fields", "codec", "delimiters", "name", "sequence", "wire_fields")

    def __init__(
        self,
        name: str,
        wire_fields: list[str],
        delimiters: Delimiters,
        codec: str,
        sequence: int = 1,
    ) -> None:
        self.name = name
        self.wire_fields = wire_fields
        self.delimiters = delimiters
        self.codec = codec
        self.sequence = sequence  # occurrence of this segment ID in its message, from 1
        self._fields: dict[int, Field] = {}  # the fields read so far, each split once

    def __repr__(self) -> str:
        return f"Segment({self.to_er7()!r})"

    def __len__(self) -> int:
        """The highest field position present."""
        return len(self.wire_fields) - 1

    def wire(self, position: int) -> str:
        if position < 1:
            raise IndexError(f"HL7 field positions start at 1, not {position}")
        fields = self.wire_fields
        return fields[position] if position < len(fields) else ""

    def field(self, position: int) -> Field:
        found = self._fields.get(position)
        if found is None:
            found = self._fields[position] = Field(self.wire(position), self.delimiters, self.codec)
        return found

    def value(
        self, position: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> Leaf:
        if position <= 2 and self.name == "MSH":
            return self.wire(position)  # MSH-1 and MSH-2 are the delimiters, never escaped
        found = self._fields.get(position) or self.field(position)
        return found.value(component, subcomponent, repetition)

    def component(
        self, position: int, component: int = 1, subcomponent: int = 1, repetition: int = 1
    ) -> str:
        """Text of one component (the HL7 null reads as "")."""
        leaf = self.value(position, component, subcomponent, repetition)
        return "" if leaf is NULL else leaf

    def text(self, position: int) -> str:
        """Text of the first component of the first repetition: for simple fields."""
        return self.component(position, 1)

    def is_null(self, position: int) -> bool:
        return self.wire(position) == '""'

    def to_er7(self) -> str:
        if self.name == "MSH":
            return "MSH" + self.delimiters.field.join(self.wire_fields[1:])[1:]
        return self.delimiters.field.join(self.wire_fields)

    @classmethod
    def build(
        cls,
        name: str,
        fields: Mapping[int, FieldValue],
        delimiters: Delimiters = STANDARD_DELIMITERS,
        codec: str = "utf-8",
    ) -> Segment:
        """A segment from values by HL7 position. For MSH give positions 3 and up."""
        if not _is_segment_id(name):
            raise LocalProtocolError(f"{name!r} is not a segment ID")
        lowest = 3 if name == "MSH" else 1
        top = max(fields, default=0)
        wire_fields = [name] + [""] * top
        if name == "MSH":
            if top < 2:
                wire_fields += [""] * (2 - top)
            wire_fields[1] = delimiters.field
            wire_fields[2] = delimiters.encoding_characters
        for position, value in fields.items():
            if position < lowest:
                raise LocalProtocolError(f"{name}-{position} cannot be set")
            wire_fields[position] = encode_field(value, delimiters)
        while len(wire_fields) > lowest and wire_fields[-1] == "":
            wire_fields.pop()
        return cls(name, wire_fields, delimiters, codec)


def _encode_leaf(leaf: Leaf, delimiters: Delimiters) -> str:
    if leaf is NULL:
        return '""'
    return escape(leaf, delimiters)


def _encode_component(value: ComponentValue, delimiters: Delimiters) -> str:
    if isinstance(value, str | Null):
        return _encode_leaf(value, delimiters)
    parts = [_encode_leaf(leaf, delimiters) for leaf in value]
    while parts and parts[-1] == "":
        parts.pop()
    return delimiters.subcomponent.join(parts)


def _encode_repetition(value: RepetitionValue, delimiters: Delimiters) -> str:
    if isinstance(value, str | Null):
        return _encode_leaf(value, delimiters)
    parts = [_encode_component(component, delimiters) for component in value]
    while parts and parts[-1] == "":
        parts.pop()  # trailing empty components are not sent (v2.5.1 section 2.5.3)
    return delimiters.component.join(parts)


def encode_field(value: FieldValue, delimiters: Delimiters = STANDARD_DELIMITERS) -> str:
    """Wire text of one field value."""
    if isinstance(value, Repeated):
        parts = [_encode_repetition(one, delimiters) for one in value.values]
        while parts and parts[-1] == "":
            parts.pop()
        return delimiters.repetition.join(parts)
    return _encode_repetition(value, delimiters)


def _is_segment_id(name: str) -> bool:
    # Three upper-case letters or digits, starting with a letter (v2.5.1 section 2.5.2);
    # Z-segments are allowed.
    return (
        len(name) == 3
        and name.isascii()
        and name[0].isalpha()
        and name.isupper()
        and (name.isalnum())
    )


class Message:
    """A parsed or built HL7 v2 message."""

    __slots__ = ("charset", "delimiters", "segments")

    def __init__(self, segments: Sequence[Segment], delimiters: Delimiters, charset: str) -> None:
        self.segments = tuple(segments)
        self.delimiters = delimiters
        self.charset = charset  # the MSH-18 name it was read or will be written with

    def __repr__(self) -> str:
        return f"Message({self.to_er7()!r})"

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    @property
    def header(self) -> Segment:
        return self.segments[0]

    def segment(self, name: str) -> Segment | None:
        """The first segment with this ID, or None."""
        for segment in self.segments:
            if segment.name == name:
                return segment
        return None

    def segments_named(self, name: str) -> list[Segment]:
        return [segment for segment in self.segments if segment.name == name]

    @property
    def message_type(self) -> tuple[str, str, str]:
        """MSH-9: message code, trigger event, message structure."""
        msh = self.header
        return (msh.component(9, 1), msh.component(9, 2), msh.component(9, 3))

    @property
    def control_id(self) -> str:
        """MSH-10, echoed in MSA-2 of the acknowledgement."""
        return self.header.text(10)

    def to_er7(self) -> str:
        """The message as text, every segment ended by CR (v2.5.1 section 2.5.2)."""
        return "".join(segment.to_er7() + "\r" for segment in self.segments)

    def encode(self) -> bytes:
        """The message as bytes in its character set; LocalProtocolError if one cannot be."""
        return encode_message_text(self.to_er7(), self.charset)


def build_message(
    segments: Iterable[tuple[str, Mapping[int, FieldValue]]],
    *,
    delimiters: Delimiters = STANDARD_DELIMITERS,
    default_charset: str = "UNICODE UTF-8",
) -> Message:
    """A message from (segment ID, {position: value}) pairs; the first must be MSH.

    The character set is MSH-18 when given, else `default_charset` (not written into MSH-18).
    """
    problem = delimiters.problem()
    if problem is not None:
        raise LocalProtocolError(problem)
    specs = list(segments)
    if not specs or specs[0][0] != "MSH":
        raise LocalProtocolError("a message starts with MSH")
    charset = default_charset
    msh18 = specs[0][1].get(18)
    if isinstance(msh18, str) and msh18:
        charset = msh18
    codec = charset_codec(charset)
    if codec is None:
        raise LocalProtocolError(f"character set {charset!r} is not supported")
    built: list[Segment] = []
    counts: dict[str, int] = {}
    for name, fields in specs:
        segment = Segment.build(name, fields, delimiters, codec)
        if name == "MSH" and built:
            raise LocalProtocolError("only one MSH per message")
        counts[name] = segment.sequence = counts.get(name, 0) + 1
        built.append(segment)
    return Message(built, delimiters, charset)


def _structure_error(
    text: str, segment_id: str = "MSH", sequence: int = 1, position: int | None = None
) -> MessageStructureError:
    code = ErrorCode.SEGMENT_SEQUENCE_ERROR if position is None else ErrorCode.DATA_TYPE_ERROR
    return MessageStructureError(
        Problem(
            segment_id=segment_id,
            segment_sequence=sequence,
            field_position=position,
            code=code,
            message=text,
        )
    )


def parse_message(data: bytes, *, default_charset: str = "UNICODE UTF-8") -> Message:
    """Parse one message from bytes (what is inside one MLLP block).

    The character set is read from MSH-18 before the rest is decoded; `default_charset` is the
    partner's setting used when MSH-18 is empty.
    """
    charset = charset_of(data, default_charset)
    text = decode_message_bytes(data, charset)
    return parse_text(text, charset=charset)


_DEFAULT_CODEC: Final = "utf-8"


def parse_text(text: str, *, charset: str = "UNICODE UTF-8") -> Message:
    """Parse one message already decoded to text. Accepts CRLF and LF between segments."""
    codec = charset_codec(charset) or _DEFAULT_CODEC
    if "\n" in text:
        # Lenient on input (files and some senders): a raw LF is never part of a value, since
        # values carry line breaks escaped.
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    text = text.lstrip("\r")
    if not text.startswith("MSH") or len(text) < 8:
        raise _structure_error("the message does not start with an MSH segment")
    fs = text[3]
    encoding = text[4:9].split(fs, 1)[0]
    if len(encoding) not in (4, 5):  # a fifth is the v2.7 truncation character
        raise _structure_error("MSH-2 must hold four encoding characters", position=2)
    delimiters = Delimiters(fs, encoding[0], encoding[1], encoding[2], encoding[3])
    problem = delimiters.problem()
    if problem is not None:
        raise _structure_error(problem, position=2)
    esc = delimiters.escape
    segments: list[Segment] = []
    counts: dict[str, int] = {}
    for raw in text.split("\r"):
        if not raw:
            continue
        name = raw[:3]
        sequence = counts[name] = counts.get(name, 0) + 1
        if not _is_segment_id(name) or (len(raw) > 3 and raw[3] != fs):
            where = len(segments) + 1
            raise _structure_error(
                f"segment {where} does not start with a segment ID: {raw[:20]!r}"
            )
        fields = raw.split(fs)
        if name == "MSH":
            if segments:
                raise _structure_error(
                    "a second MSH inside one message (batches are not accepted)", sequence=sequence
                )
            fields.insert(1, fs)
            checked = fields[3:]
            offset = 3
        else:
            checked = fields
            offset = 0
        if esc in raw:
            for index, wire in enumerate(checked):
                if esc in wire:
                    try:
                        check_escapes(wire, delimiters, codec)
                    except EscapeError as exc:
                        raise _structure_error(str(exc), name, sequence, index + offset) from None
        segments.append(Segment(name, fields, delimiters, codec, sequence))
    return Message(segments, delimiters, charset)
