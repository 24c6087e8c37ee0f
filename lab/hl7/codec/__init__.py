"""HL7 v2.5.1 protocol core of the lab module: ER7 codec, MLLP framing, ACKs, message mapping.

Pure code: bytes in, typed values and bytes out; the listener, dispatcher and outbox that do
the I/O live beside it and call these.
"""

from lab.hl7.codec.ack import (
    AckCode,
    AckRequest,
    Outcome,
    build_ack,
    outcome_of,
    requested_acknowledgements,
)
from lab.hl7.codec.er7 import NULL, Delimiters, Message, Segment, build_message, parse_message
from lab.hl7.codec.errors import (
    ErrorCode,
    Hl7Error,
    LocalProtocolError,
    MessageStructureError,
    MllpFramingError,
    Problem,
    RemoteProtocolError,
    Severity,
)
from lab.hl7.codec.inbound import map_inbound
from lab.hl7.codec.mllp import CLOSED, NEED_DATA, MllpDecoder, frame
from lab.hl7.codec.oru import build_oru

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "NULL",
    "AckCode",
    "AckRequest",
    "Delimiters",
    "ErrorCode",
    "Hl7Error",
    "LocalProtocolError",
    "Message",
    "MessageStructureError",
    "MllpDecoder",
    "MllpFramingError",
    "Outcome",
    "Problem",
    "RemoteProtocolError",
    "Segment",
    "Severity",
    "build_ack",
    "build_message",
    "build_oru",
    "frame",
    "map_inbound",
    "outcome_of",
    "parse_message",
    "requested_acknowledgements",
]
