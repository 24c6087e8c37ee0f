"""ASTM E1394 (CLSI LIS2-A2) field syntax: delimiters, escapes, fields, timestamps; no I/O.

A record is text: fields split by the field delimiter, a field into repeats by the repeat
delimiter, a repeat into components by the component delimiter (LIS2-A2 5.1 - 5.5). Here a field
is a tuple of repeats and a repeat a tuple of component strings, already unescaped, so every
string has exactly one structure: ``""`` is ``(("",),)``, ``"a^b"`` is ``(("a", "b"),)`` and
``"a\\b"`` is ``(("a",), ("b",))``. `join_field` is the inverse of `split_field`.

Escapes (LIS2-A2 5.6): ``&F&`` field, ``&S&`` component, ``&R&`` repeat, ``&E&`` escape delimiter,
``&Xhh..&`` hex bytes in the record's character set (verify). They are undone after splitting.
An escape delimiter that does not start a valid escape sequence is kept as text, because some
analysers send a bare ``&`` ("Smith & Co"). When writing, delimiters and the escape delimiter in
values are escaped, and control characters (which a frame may not carry) become ``&Xhh&``.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Final

from instruments.astm.errors import LocalProtocolError, RecordError

Repeat = tuple[str, ...]
Field = tuple[Repeat, ...]

EMPTY_FIELD: Final[Field] = (("",),)

_HEX = re.compile(r"X((?:[0-9A-Fa-f]{2})+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Delimiters:
    """The four delimiters of a message, read from its H record (LIS2-A2 7.1.2)."""

    __slots__ = ("_escape_pattern", "component", "escape", "field", "repeat")

    def __init__(
        self, field: str = "|", repeat: str = "\\", component: str = "^", escape: str = "&"
    ) -> None:
        chars = (field, repeat, component, escape)
        if any(len(char) != 1 for char in chars) or len(set(chars)) != 4:
            raise RecordError(f"delimiters must be four different characters, got {chars!r}")
        if any(_CONTROL.match(char) or char.isalnum() for char in chars):
            raise RecordError(f"delimiters must be printable punctuation, got {chars!r}")
        self.field = field
        self.repeat = repeat
        self.component = component
        self.escape = escape
        self._escape_pattern = re.compile(
            "[" + re.escape(field + repeat + component + escape) + r"\x00-\x1f\x7f]"
        )

    @classmethod
    def from_header(cls, text: str) -> Delimiters:
        """Read the delimiters from the start of an H record: ``H|\\^&...``."""
        if len(text) < 5 or text[0] != "H":
            raise RecordError(f"an H record must start with H and four delimiters: {text[:5]!r}")
        return _delimiters_for(text[1:5])

    @property
    def definition(self) -> str:
        """H-2 as written after the field delimiter: repeat, component, escape."""
        return self.repeat + self.component + self.escape

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Delimiters):
            return NotImplemented
        return self.as_tuple() == other.as_tuple()

    def __hash__(self) -> int:
        return hash(self.as_tuple())

    def __repr__(self) -> str:
        return f"Delimiters({self.field!r}, {self.repeat!r}, {self.component!r}, {self.escape!r})"

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.field, self.repeat, self.component, self.escape)

    # ------------------------------------------------------------------ reading

    def split_field(self, text: str, encoding: str = "latin-1") -> Field:
        """One field's text to its repeats and components, unescaped."""
        if not text:
            return EMPTY_FIELD
        repeat, component, escape = self.repeat, self.component, self.escape
        if escape in text:
            return tuple(
                tuple(self.unescape(value, encoding) for value in piece.split(component))
                for piece in text.split(repeat)
            )
        if repeat in text:
            return tuple(tuple(piece.split(component)) for piece in text.split(repeat))
        if component in text:
            return (tuple(text.split(component)),)
        return ((text,),)

    def unescape(self, text: str, encoding: str = "latin-1") -> str:
        """Undo LIS2-A2 escapes in one component; keep a bare escape delimiter as text."""
        escape = self.escape
        if escape not in text:
            return text
        out: list[str] = []
        position = 0
        while True:
            start = text.find(escape, position)
            if start < 0:
                out.append(text[position:])
                return "".join(out)
            end = text.find(escape, start + 1)
            if end < 0:
                out.append(text[position:])
                return "".join(out)
            replacement = self._escape_value(text[start + 1 : end], encoding)
            if replacement is None:
                # Not an escape sequence: keep this delimiter as text and look further on.
                out.append(text[position : start + 1])
                position = start + 1
                continue
            out.append(text[position:start])
            out.append(replacement)
            position = end + 1

    def _escape_value(self, code: str, encoding: str) -> str | None:
        if code == "F":
            return self.field
        if code == "S":
            return self.component
        if code == "R":
            return self.repeat
        if code == "E":
            return self.escape
        match = _HEX.fullmatch(code)
        if match is None:
            return None
        try:
            return bytes.fromhex(match.group(1)).decode(encoding)
        except UnicodeDecodeError:
            return None

    # ------------------------------------------------------------------ writing

    def escape_text(self, text: str) -> str:
        """Escape delimiters and control characters in one component value."""
        if not self._escape_pattern.search(text):
            return text
        return self._escape_pattern.sub(self._escape_match, text)

    def _escape_match(self, match: re.Match[str]) -> str:
        char = match.group()
        code = {self.field: "F", self.component: "S", self.repeat: "R", self.escape: "E"}.get(char)
        if code is None:
            code = f"X{ord(char):02X}"
        return f"{self.escape}{code}{self.escape}"

    def join_field(self, field: Field) -> str:
        """The inverse of `split_field`: repeats and components to escaped text."""
        if field is EMPTY_FIELD:
            return ""
        escape_text = self.escape_text
        return self.repeat.join(self.component.join(map(escape_text, repeat)) for repeat in field)


DEFAULT_DELIMITERS: Final = Delimiters()


@functools.lru_cache(maxsize=64)
def _delimiters_for(chars: str) -> Delimiters:
    """One `Delimiters` per set seen: an analyser sends the same H record all day."""
    return Delimiters(chars[0], chars[1], chars[2], chars[3])


# ---------------------------------------------------------------------- timestamps

_TIMESTAMP_LENGTHS: Final = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M"}


def parse_timestamp(text: str) -> datetime | None:
    """``YYYYMMDDHHMMSS`` or a shorter prefix of it (LIS2-A2 5.6.2) to a naive datetime.

    Empty gives None; anything else that is not such a timestamp raises `RecordError`. The time
    is the analyser's local time: the caller attaches the zone from the instrument's settings.
    """
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise RecordError(f"timestamp {text!r} is not YYYYMMDD[HH[MM[SS]]]")
    try:
        if len(text) == 14:
            return datetime(
                int(text[0:4]),
                int(text[4:6]),
                int(text[6:8]),
                int(text[8:10]),
                int(text[10:12]),
                int(text[12:14]),
            )
        pattern = _TIMESTAMP_LENGTHS.get(len(text))
        if pattern is None:
            raise RecordError(f"timestamp {text!r} has {len(text)} digits")
        return datetime.strptime(text, pattern)  # analyser local time: naive on purpose
    except ValueError as error:
        raise RecordError(f"timestamp {text!r} is not a valid date and time") from error


def format_timestamp(moment: datetime, *, digits: int = 14) -> str:
    """A datetime as ``YYYYMMDDHHMMSS`` (or its first `digits` digits).

    LIS2-A2 timestamps carry no zone: they are the analyser's local time. A datetime with a
    zone is refused, so a UTC time can never be sent as if it were local: the caller converts
    to the analyser's wall clock first (`InstrumentConfig.wall_clock`).
    """
    if getattr(moment, "tzinfo", None) is not None:
        raise LocalProtocolError(
            "ASTM timestamps are the analyser's local time: convert an aware datetime to its "
            "wall clock before sending it"
        )
    return moment.strftime("%Y%m%d%H%M%S")[:digits]
