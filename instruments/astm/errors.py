"""Errors of the ASTM protocol core.

Two families, as in h11: `LocalProtocolError` means our own code used the API wrongly or asked
for something the protocol cannot carry; `RemoteProtocolError` means the peer sent something the
standard does not allow. The link layer never raises the remote family at the caller: it answers
the peer per the standard (NAK, ignore) and reports it as an event. The record codec raises
`RecordError` (a remote error) for input it cannot read. Any other exception is a bug.
"""

from __future__ import annotations


class AstmError(Exception):
    """Base of every error raised on purpose by `instruments.astm`."""


class LocalProtocolError(AstmError):
    """We did something the protocol or the current state does not allow."""


class RemoteProtocolError(AstmError):
    """The peer sent something the standard does not allow."""


class FrameError(RemoteProtocolError):
    """A received frame is malformed (checksum, restricted character, layout)."""


class RecordError(RemoteProtocolError):
    """A received record cannot be read (character set, timestamp, delimiter definition)."""


class RecordBuildError(LocalProtocolError):
    """A record cannot be written as asked (a character the instrument's charset lacks)."""


class TranscriptError(AstmError):
    """A transcript file does not follow the documented format."""
