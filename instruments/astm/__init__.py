"""ASTM E1381 link layer and E1394 record codec for analysers: pure code, no I/O.

- `link.Connection`: the E1381 (CLSI LIS1-A) state machine, bytes and time in, events out.
- `frames`: frame build/check and the checksum.
- `record_codec` / `records` / `codec`: E1394 (CLSI LIS2-A2) records, fields, escapes.
- `message.Message`: records grouped as H > P > O > R with comments attached.
- `transcript`: the text format of captured traffic, for replay.
- `pair.ConnectionPair`: two connections joined in memory (tests, simulator, benchmarks).
"""

from __future__ import annotations

from instruments.astm.codec import DEFAULT_DELIMITERS, Delimiters, format_timestamp, parse_timestamp
from instruments.astm.errors import (
    AstmError,
    FrameError,
    LocalProtocolError,
    RecordBuildError,
    RecordError,
    RemoteProtocolError,
)
from instruments.astm.events import (
    NEED_DATA,
    PAUSED,
    AbortReason,
    BidRefused,
    Direction,
    Event,
    FrameRejected,
    LinkEstablished,
    MessageReceived,
    MessageSent,
    TransferAborted,
    TransferEnded,
)
from instruments.astm.link import Connection, Role, State
from instruments.astm.message import Message
from instruments.astm.record_codec import (
    build_record,
    build_records,
    parse_record,
    parse_records,
)
from instruments.astm.records import (
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
    UniversalTestId,
    UnknownRecord,
)

__all__ = [
    "DEFAULT_DELIMITERS",
    "NEED_DATA",
    "PAUSED",
    "AbortReason",
    "AstmError",
    "BidRefused",
    "CommentRecord",
    "Connection",
    "Delimiters",
    "Direction",
    "Event",
    "FrameError",
    "FrameRejected",
    "HeaderRecord",
    "LinkEstablished",
    "LocalProtocolError",
    "ManufacturerRecord",
    "Message",
    "MessageReceived",
    "MessageSent",
    "OrderRecord",
    "PatientRecord",
    "QueryRecord",
    "Record",
    "RecordBuildError",
    "RecordError",
    "RemoteProtocolError",
    "ResultRecord",
    "Role",
    "ScientificRecord",
    "State",
    "TerminatorRecord",
    "TransferAborted",
    "TransferEnded",
    "UniversalTestId",
    "UnknownRecord",
    "build_record",
    "build_records",
    "format_timestamp",
    "parse_record",
    "parse_records",
    "parse_timestamp",
]
