"""ER7 delimiters and escape sequences (HL7 v2.5.1 chapter 2, sections 2.5.4 and 2.7).

Decisions, so that a value survives a round trip through our own codec unchanged:
- The five delimiters inside a value are sent as `\\F\\ \\S\\ \\R\\ \\T\\ \\E\\` (section 2.7.1).
- A line break inside a value is sent as the formatting command `\\.br\\` (section 2.7.6), and
  `\\.br\\` is read back as "\\n": free-text comments (NTE-3, FT) from the record keep their
  lines. A bare CR, and the other C0 control characters (which would end a segment or break MLLP
  framing), are sent as hex `\\X0D\\` (section 2.7.3) and read back as themselves.
  (When "." is itself a delimiter, `\\.br\\` cannot be sent and "\\n" goes as `\\X0A\\`.)
- `\\.sp\\` / `\\.sp n\\` are read as n line breaks; the other formatting commands (`\\H\\ \\N\\`,
  `\\.fi\\ \\.nf\\ \\.in\\ \\.ti\\ \\.sk\\ \\.ce\\`) only change the display and are dropped.
- `\\Xhh..\\` is read as bytes in the message's character set (MSH-18); a single byte that
  set cannot carry alone is read as the code point U+00hh (how python-hl7 escapes Ø).
  Character-set switches (`\\C..\\`, `\\M..\\`, ISO 2022) and locally defined `\\Z..\\`
  sequences are refused with a clear error rather than passed through as other text.
- A value that is literally two double quotes would read as the HL7 null (section 2.5.3: `""`
  means "delete the value"), so its first quote is sent as `\\X22\\`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Final


class Null(Enum):
    """HL7 explicit null: the field was sent as `""`, meaning "delete the stored value".

    An empty field means "not sent / no change"; it is the empty string in our model.
    """

    NULL = '""'

    def __repr__(self) -> str:
        return "NULL"


NULL: Final = Null.NULL

# Why these characters may not be delimiters: letters and digits occur in segment names and in
# values that are never escaped by real senders; CR/LF end segments; MLLP bytes end frames.
_FORBIDDEN_DELIMITERS: Final = frozenset('\r\n\x0b\x1c"')


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The delimiters a message declares in MSH-1 (field) and MSH-2 (the others)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2: component, repetition, escape, subcomponent (section 2.15.9.2)."""
        return self.component + self.repetition + self.escape + self.subcomponent

    def problem(self) -> str | None:
        """Why this set cannot be used, or None when it can."""
        chars = (self.field, self.component, self.repetition, self.escape, self.subcomponent)
        for char in chars:
            if len(char) != 1:
                return f"delimiter {char!r} is not one character"
            if not char.isascii() or not char.isprintable() or char.isalnum() or char == " ":
                return f"delimiter {char!r} must be printable ASCII punctuation"
            if char in _FORBIDDEN_DELIMITERS:
                return f"delimiter {char!r} is not allowed"
        if len(set(chars)) != len(chars):
            return f"delimiters {''.join(chars)!r} are not all different"
        return None


STANDARD_DELIMITERS: Final = Delimiters()


class EscapeError(ValueError):
    """An escape sequence that cannot be read; the codec turns it into a structured error."""


@lru_cache(maxsize=64)
def _escape_table(delimiters: Delimiters) -> dict[int, str]:
    esc = delimiters.escape
    table: dict[int, str] = {}
    for code in range(0x20):
        if code != 0x09:  # TAB is harmless inside a segment
            table[code] = f"{esc}X{code:02X}{esc}"
    table[0x7F] = f"{esc}X7F{esc}"
    if "." not in delimiters.encoding_characters + delimiters.field:
        table[ord("\n")] = f"{esc}.br{esc}"  # else \.br\ would be cut apart: stay with \X0A\
    table[ord(delimiters.field)] = f"{esc}F{esc}"
    table[ord(delimiters.component)] = f"{esc}S{esc}"
    table[ord(delimiters.repetition)] = f"{esc}R{esc}"
    table[ord(delimiters.subcomponent)] = f"{esc}T{esc}"
    table[ord(esc)] = f"{esc}E{esc}"
    return table


_STANDARD_TABLE: Final = _escape_table(STANDARD_DELIMITERS)


def escape(text: str, delimiters: Delimiters) -> str:
    """Wire text of one leaf value (a subcomponent)."""
    if not text:
        return text
    if text == '""':
        return f"{delimiters.escape}X22{delimiters.escape}" + '"'
    # The standard delimiters' table without hashing the dataclass on every leaf: an ORU of
    # ten observations escapes some 340 leaves, and the cache's lookup was most of that time.
    if delimiters is STANDARD_DELIMITERS:
        return text.translate(_STANDARD_TABLE)
    return text.translate(_escape_table(delimiters))


_FORMATTING_DROPPED: Final = re.compile(r"\A(?:H|N|\.fi|\.nf|\.ce|\.(?:in|ti|sk)[+-]?\d*)\Z")
_SPACE: Final = re.compile(r"\A\.sp\s*([+]?\d*)\Z")
_HEX: Final = re.compile(r"\A(?:[0-9A-Fa-f]{2})+\Z")


def _sequence_text(sequence: str, delimiters: Delimiters, codec: str) -> str:
    """Text for the content of one escape sequence (between two escape characters)."""
    single = {
        "F": delimiters.field,
        "S": delimiters.component,
        "R": delimiters.repetition,
        "T": delimiters.subcomponent,
        "E": delimiters.escape,
    }.get(sequence)
    if single is not None:
        return single
    if sequence == ".br":
        return "\n"
    if sequence[:1] == "X":
        digits = sequence[1:]
        if not _HEX.match(digits):
            raise EscapeError(f"hex escape {sequence!r} needs pairs of hex digits")
        data = bytes.fromhex(digits)
        try:
            return data.decode(codec)
        except UnicodeDecodeError as exc:
            if len(data) == 1:
                # One byte that the message's set cannot carry alone (0x80-0xFF in UTF-8):
                # python-hl7 and others escape a character by its code point, `\\XD8\\` for Ø.
                return data.decode("latin-1")
            raise EscapeError(f"hex escape {sequence!r} is not valid {codec}") from exc
    space = _SPACE.match(sequence)
    if space:
        count = int(space.group(1) or "1")
        return "\n" * count
    if _FORMATTING_DROPPED.match(sequence):
        return ""
    if sequence[:1] in ("C", "M"):
        raise EscapeError(f"character set switch {sequence!r} (ISO 2022) is not supported")
    raise EscapeError(f"unknown escape sequence {sequence!r}")


def unescape(wire: str, delimiters: Delimiters, codec: str) -> str:
    """Text of one leaf value read from the wire. Raises EscapeError on a broken sequence."""
    esc = delimiters.escape
    if esc not in wire:
        return wire
    parts = wire.split(esc)
    if len(parts) % 2 == 0:
        raise EscapeError(f"escape character without its closing partner in {wire!r}")
    out = parts[0::2]
    for index, sequence in enumerate(parts[1::2]):
        out[index] += _sequence_text(sequence, delimiters, codec)
    return "".join(out)


def check_escapes(wire: str, delimiters: Delimiters, codec: str) -> None:
    """Raise EscapeError if a field's wire text holds a sequence we could not read later.

    Sequences never contain delimiters (section 2.7), so pairing escape characters across
    the whole field is the same as pairing them per leaf.
    """
    parts = wire.split(delimiters.escape)
    if len(parts) % 2 == 0:
        raise EscapeError(f"escape character without its closing partner in {wire!r}")
    others = (
        delimiters.field,
        delimiters.component,
        delimiters.repetition,
        delimiters.subcomponent,
    )
    for sequence in parts[1::2]:
        if any(char in sequence for char in others):
            raise EscapeError(f"escape sequence crosses a delimiter in {wire!r}")
        _sequence_text(sequence, delimiters, codec)
