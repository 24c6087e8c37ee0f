"""Byte transcripts of an ASTM line, so a capture can be replayed through the decoder.

The format is plain ASCII text, one line per piece of traffic (one read or write)::

    # a comment; blank lines are ignored
    @ 12.5                                    time in seconds for the lines that follow
    > <ENQ>                                   bytes the instrument (analyser) sent
    < <ACK>                                   bytes the host (LIS) sent
    > <STX>1H|\\^&|||c311<CR><ETX>4F<CR><LF>

After ``> `` or ``< `` comes the payload: printable ASCII stands for itself, except ``<`` which
always opens a token: a control character by its name (``<STX>``, ``<CR>``, ``<x7F>`` style for
the rest) or any byte as ``<xHH>`` (so æ in ISO 8859-1 is ``<xE6>`` and a literal ``<`` is
``<x3C>``). A line holds what one read returned, so a frame split across reads spans lines.
Pure functions: the caller reads the file (``Path.read_text(encoding="ascii")``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from instruments.astm.errors import TranscriptError
from instruments.astm.events import Event, MessageReceived, Sentinel
from instruments.astm.link import Connection, Role

_NAMES = [
    "NUL",
    "SOH",
    "STX",
    "ETX",
    "EOT",
    "ENQ",
    "ACK",
    "BEL",
    "BS",
    "HT",
    "LF",
    "VT",
    "FF",
    "CR",
    "SO",
    "SI",
    "DLE",
    "DC1",
    "DC2",
    "DC3",
    "DC4",
    "NAK",
    "SYN",
    "ETB",
    "CAN",
    "EM",
    "SUB",
    "ESC",
    "FS",
    "GS",
    "RS",
    "US",
]
_CODE_BY_NAME = {name: code for code, name in enumerate(_NAMES)}
_TOKEN = re.compile(r"<([A-Z0-9]{2,3}|x[0-9A-Fa-f]{2})>")
_MARKS = {">": Role.INSTRUMENT, "<": Role.HOST}


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptEntry:
    time: float
    writer: Role  # who sent these bytes
    data: bytes


# The tokens every frame and every link reply carries, replaced one after the other
# (str.replace, no call per match); whatever token is left goes through one regular expression.
_COMMON_TOKENS = [
    (f"<{name}>", chr(_CODE_BY_NAME[name]))
    for name in ("STX", "ETX", "ETB", "CR", "LF", "ENQ", "ACK", "NAK", "EOT")
]
_TOKEN_TEXT = {
    **{name: chr(code) for code, name in enumerate(_NAMES)},
    **{f"x{byte:02X}": chr(byte) for byte in range(256)},
    **{f"x{byte:02x}": chr(byte) for byte in range(256)},
}
_ANY_TOKEN = re.compile(r"<([A-Z0-9]{2,3}|x[0-9A-Fa-f]{2})>")


def decode_payload(payload: str, *, line_number: int = 0) -> bytes:
    """The bytes a payload stands for.

    The turnaround indexer decodes every line of every analyser's archive, so the usual case
    is made cheap: common tokens by `str.replace`, the rest in one pass. A payload that is not
    valid is decoded the slow way, which says where it goes wrong."""
    if payload.isascii():
        text = payload
        for token, char in _COMMON_TOKENS:
            if token in text:
                text = text.replace(token, char)
        if "<" not in text:
            return text.encode("latin-1")
        tokens = 0

        def token_text(match: re.Match[str]) -> str:
            nonlocal tokens
            tokens += 1
            return _TOKEN_TEXT.get(match.group(1), "<")

        decoded = _ANY_TOKEN.sub(token_text, text)
        # Every '<' left must have opened a known token (a decoded <x3C> is a '<' too).
        if text.count("<") == tokens and decoded.count("<") == text.count("<x3C>") + text.count(
            "<x3c>"
        ):
            return decoded.encode("latin-1")
    return _decode_slowly(payload, line_number)


def _decode_slowly(payload: str, line_number: int) -> bytes:
    """`decode_payload` token by token, raising at the first fault."""
    out = bytearray()
    position = 0
    while position < len(payload):
        start = payload.find("<", position)
        if start < 0:
            start = len(payload)
        chunk = payload[position:start]
        if not chunk.isascii():
            raise TranscriptError(f"line {line_number}: non-ASCII text; write bytes as <xHH>")
        out += chunk.encode("ascii")
        if start == len(payload):
            break
        match = _TOKEN.match(payload, start)
        if match is None:
            raise TranscriptError(f"line {line_number}: '<' must start a token like <STX> or <x3C>")
        name = match.group(1)
        if name.startswith("x"):
            out.append(int(name[1:], 16))
        elif name in _CODE_BY_NAME:
            out.append(_CODE_BY_NAME[name])
        else:
            raise TranscriptError(f"line {line_number}: unknown token <{name}>")
        position = match.end()
    return bytes(out)


def _payload_text(byte: int) -> str:
    if byte < 0x20:
        return f"<{_NAMES[byte]}>"
    if byte == 0x3C or byte >= 0x7F:
        return f"<x{byte:02X}>"
    return chr(byte)


# The text of each byte that is not written as itself, by the byte read as Latin-1 (one
# character each). The archive encodes every piece of every line: the characters every frame
# carries are replaced one after the other (str.replace, no call per match), then one regular
# expression pass replaces whatever else is not written as itself (rare).
_PAYLOAD_TEXT = {
    chr(byte): text for byte in range(256) if (text := _payload_text(byte)) != chr(byte)
}
_FRAME_CHARACTERS = [(char, _PAYLOAD_TEXT[char]) for char in "\x02\x03\x17\r\n"]
_NOT_ITSELF = re.compile("[\x00-\x1f\x7f-\xff]")  # '<' is replaced first, on its own


def _token(match: re.Match[str]) -> str:
    return _PAYLOAD_TEXT[match.group()]


def encode_payload(data: bytes) -> str:
    """The payload text for `data` (the inverse of `decode_payload`)."""
    text = data.decode("latin-1")
    if "<" in text:
        text = text.replace("<", "<x3C>")  # first: the tokens below start with '<'
    for char, token in _FRAME_CHARACTERS:
        if char in text:
            text = text.replace(char, token)
    if _NOT_ITSELF.search(text) is not None:
        text = _NOT_ITSELF.sub(_token, text)
    if data.endswith(b" "):
        text = text[:-1] + "<x20>"  # a trailing space would not survive an editor
    return text


def read_transcript(text: str) -> list[TranscriptEntry]:
    """The entries of a transcript, in order."""
    entries: list[TranscriptEntry] = []
    time = 0.0
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        mark, payload = line[:1], line[2:]
        if mark == "@":
            try:
                time = float(payload)
            except ValueError as error:
                raise TranscriptError(f"line {line_number}: bad time {payload!r}") from error
            continue
        writer = _MARKS.get(mark)
        if writer is None or line[1:2] != " ":
            raise TranscriptError(f"line {line_number}: must start with '> ', '< ', '@ ' or '#'")
        entries.append(
            TranscriptEntry(
                time=time, writer=writer, data=decode_payload(payload, line_number=line_number)
            )
        )
    return entries


def format_transcript(entries: Iterable[TranscriptEntry]) -> str:
    """Transcript text for `entries`; an ``@`` line wherever the time changes."""
    lines: list[str] = []
    time: float | None = 0.0
    for entry in entries:
        if entry.time != time:
            lines.append(f"@ {entry.time:g}")
            time = entry.time
        mark = ">" if entry.writer is Role.INSTRUMENT else "<"
        lines.append(f"{mark} {encode_payload(entry.data)}")
    return "\n".join(lines) + "\n"


#: Called with each message awaiting confirmation: confirm (or reject) it, maybe queue a reply.
OnMessage = Callable[[Connection, MessageReceived, float], None]


def confirm_message(connection: Connection, _message: MessageReceived, now: float) -> None:
    connection.confirm_received(now)


@dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """What a connection did when fed one side of a transcript."""

    events: list[Event]
    written: bytes  # what our connection wrote
    expected_written: bytes  # what the transcript says that side wrote

    def messages(self) -> list[MessageReceived]:
        return [event for event in self.events if isinstance(event, MessageReceived)]


def replay(
    entries: Iterable[TranscriptEntry],
    *,
    role: Role = Role.HOST,
    on_message: OnMessage = confirm_message,
) -> Replay:
    """Feed the other side's bytes to a new `Connection` playing `role`, at the transcript's
    times, and collect its events and what it wrote (to compare with the transcript)."""
    connection = Connection(role=role)
    events: list[Event] = []
    written = bytearray()
    expected = bytearray()

    def drain(now: float) -> None:
        while not isinstance(event := connection.next_event(), Sentinel):
            events.append(event)
            if isinstance(event, MessageReceived) and event.needs_confirmation:
                on_message(connection, event, now)
        written.extend(connection.data_to_send())

    for entry in entries:
        if entry.writer is role:
            expected.extend(entry.data)
            connection.tick(entry.time)
        else:
            connection.receive_data(entry.data, entry.time)
        drain(entry.time)
    return Replay(events=events, written=bytes(written), expected_written=bytes(expected))
