"""Character sets of HL7 messages (MSH-18, HL7 table 0211) and the bytes they become.

MSH-18 names the character set of everything after MSH; it has to be found in the raw bytes
before the message can be decoded. That works because every supported set is ASCII-compatible:
the delimiters and MSH are ASCII in all of them. When MSH-18 is empty the partner's configured
default applies (v2.5.1 section 2.15.9.18 leaves the default to site agreement).
"""

from __future__ import annotations

from typing import Final

from lab.hl7.codec.errors import ErrorCode, LocalProtocolError, MessageStructureError, Problem
from lab.hl7.codec.escapes import Delimiters, EscapeError, unescape

# Table 0211 names we accept, and the Python codec for each. UTF-8 and ISO-8859-1 are the ones
# the contract names; ASCII and 8859/15 cost nothing and occur in Norwegian traffic.
_CODECS: Final = {
    "UNICODE UTF-8": "utf-8",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "ASCII": "ascii",
}
# Spellings seen from senders that do not follow table 0211 to the letter.
_ALIASES: Final = {"UTF-8": "UNICODE UTF-8", "UTF8": "UNICODE UTF-8", "ISO-8859-1": "8859/1"}

UTF_8: Final = "UNICODE UTF-8"
LATIN_1: Final = "8859/1"


def canonical_charset(name: str) -> str | None:
    """The table 0211 name for a charset name as sent, or None if we do not support it."""
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    return key if key in _CODECS else None


def charset_codec(name: str) -> str | None:
    """The Python codec for a table 0211 name, or None if we do not support it."""
    canonical = canonical_charset(name)
    return None if canonical is None else _CODECS[canonical]


def _problem(
    text: str,
    *,
    code: ErrorCode,
    segment: str = "MSH",
    sequence: int = 1,
    position: int | None = None,
) -> MessageStructureError:
    return MessageStructureError(
        Problem(
            segment_id=segment,
            segment_sequence=sequence,
            field_position=position,
            code=code,
            message=text,
        )
    )


def charset_of(data: bytes, default_charset: str) -> str:
    """The table 0211 name in MSH-18 of raw message bytes, or the default when it is empty."""
    start = 0
    while start < len(data) and data[start] in b"\r\n":
        start += 1
    if data[start : start + 3] != b"MSH" or len(data) < start + 8:
        raise _problem(
            "the message does not start with an MSH segment",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    separator = data[start + 3 : start + 4]
    end = len(data)
    for terminator in (b"\r", b"\n"):
        found = data.find(terminator, start)
        if found != -1:
            end = min(end, found)
    header = data[start:end].split(separator)
    if separator in b"\r\n" or len(header) < 2:
        raise _problem(
            "MSH-1 and MSH-2 (the delimiters) are missing or broken",
            code=ErrorCode.SEGMENT_SEQUENCE_ERROR,
        )
    # header[0] is "MSH" and header[1] is MSH-2, so MSH-n is header[n - 1].
    raw = header[17] if len(header) > 17 else b""
    encoding = header[1]
    if len(encoding) >= 2:
        # First repetition, first component: a repeated MSH-18 lists alternates (ISO 2022).
        raw = raw.split(encoding[1:2])[0].split(encoding[0:1])[0]
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise _problem(
            "MSH-18 is not ASCII", code=ErrorCode.TABLE_VALUE_NOT_FOUND, position=18
        ) from None
    if len(encoding) >= 4 and encoding[2:3] in raw:
        # A delimiter inside the name (a sender using "-" as a delimiter) arrives escaped.
        chars = (separator + encoding[:4]).decode("latin-1")
        try:
            name = unescape(name, Delimiters(*chars), "ascii")
        except (EscapeError, UnicodeDecodeError):
            raise _problem(
                "MSH-18 holds a broken escape", code=ErrorCode.DATA_TYPE_ERROR, position=18
            ) from None
    if not name:
        name = default_charset
    canonical = canonical_charset(name)
    if canonical is None:
        raise _problem(
            f"character set {name!r} is not supported (UNICODE UTF-8, 8859/1)",
            code=ErrorCode.TABLE_VALUE_NOT_FOUND,
            position=18,
        )
    return canonical


def decode_message_bytes(data: bytes, charset: str) -> str:
    """Decode a whole message; a byte the character set cannot carry names its segment/field."""
    codec = charset_codec(charset) or "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        before = data[: exc.start].replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        segment_start = before.rfind(b"\r") + 1
        segment_text = before[segment_start:]
        name = segment_text[:3].decode("ascii", "replace")
        sequence = 1 + sum(
            1 for line in before[:segment_start].split(b"\r") if line[:3] == segment_text[:3]
        )
        position = segment_text.count(data[3:4]) + (1 if name == "MSH" else 0)
        raise _problem(
            f"bytes that are not valid {charset} at offset {exc.start}",
            code=ErrorCode.DATA_TYPE_ERROR,
            segment=name,
            sequence=sequence,
            position=position,
        ) from None


def encode_message_text(text: str, charset: str) -> bytes:
    """Encode a whole message; a character the set cannot carry is an error, never a `?`."""
    codec = charset_codec(charset)
    if codec is None:
        raise LocalProtocolError(f"character set {charset!r} is not supported")
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        segment_start = text.rfind("\r", 0, exc.start) + 1
        segment = text[segment_start : segment_start + 3]
        bad = text[exc.start : exc.end]
        names = ", ".join(f"U+{ord(char):04X}" for char in bad)
        raise LocalProtocolError(
            f"{bad!r} ({names}) in segment {segment} cannot be written in {charset}; "
            "send UNICODE UTF-8 to this partner"
        ) from None
