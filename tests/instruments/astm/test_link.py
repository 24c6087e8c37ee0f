"""Scenario tests of the E1381 link layer: one connection fed bytes by hand, or a pair."""

from __future__ import annotations

import pytest

from instruments.astm.constants import ACK_BYTE, ENQ_BYTE, EOT_BYTE, NAK_BYTE
from instruments.astm.errors import LocalProtocolError
from instruments.astm.events import (
    NEED_DATA,
    PAUSED,
    AbortReason,
    BidRefusal,
    BidRefused,
    Direction,
    FrameRejected,
    LinkEstablished,
    MessageReceived,
    MessageSent,
    TransferAborted,
    TransferEnded,
)
from instruments.astm.frames import build_frame, build_frames, parse_frame
from instruments.astm.link import _TRANSITIONS, PEER_INPUTS_BY_STATE, Connection, Role, State
from instruments.astm.pair import ConnectionPair

from .support import SAMPLE_MESSAGE, drain

SESSION = ENQ_BYTE + b"".join(build_frames(SAMPLE_MESSAGE)) + EOT_BYTE


def receive_session(pieces: list[bytes]) -> tuple[Connection, list[object], bytes]:
    host = Connection(role=Role.HOST)
    events: list[object] = []
    for piece in pieces:
        host.receive_data(piece, 1.0)
        while (event := host.next_event()) is not NEED_DATA:
            if event is PAUSED:
                host.confirm_received(1.0)
                continue
            events.append(event)
    return host, events, host.data_to_send()


EXPECTED_EVENTS = [
    LinkEstablished(direction=Direction.RECEIVING),
    MessageReceived(records=tuple(SAMPLE_MESSAGE), needs_confirmation=True, complete=True),
    TransferEnded(direction=Direction.RECEIVING),
]


def test_every_peer_input_of_every_state_has_a_row() -> None:
    for state, inputs in PEER_INPUTS_BY_STATE.items():
        for peer_input in inputs:
            assert (state, peer_input) in _TRANSITIONS, (state, peer_input)
    assert set(PEER_INPUTS_BY_STATE) == set(State)


@pytest.mark.parametrize("how", ["whole", "one byte at a time", "trailing data"])
def test_same_bytes_same_events_however_they_arrive(how: str) -> None:
    if how == "whole":
        pieces = [SESSION]
    elif how == "one byte at a time":
        pieces = [SESSION[i : i + 1] for i in range(len(SESSION))]
    else:
        pieces = [SESSION + ENQ_BYTE + b"\x021H|\\^&"]
    host, events, written = receive_session(pieces)
    assert events[:3] == EXPECTED_EVENTS
    assert written[: len(SAMPLE_MESSAGE) + 1] == ACK_BYTE * (len(SAMPLE_MESSAGE) + 1)
    if how == "trailing data":
        assert events[3:] == [LinkEstablished(direction=Direction.RECEIVING)]
        assert host.state is State.RECEIVING
    else:
        assert host.state is State.NEUTRAL
        assert written == ACK_BYTE * (len(SAMPLE_MESSAGE) + 1)


def test_last_frame_is_acknowledged_only_after_confirmation() -> None:
    host = Connection(role=Role.HOST)
    host.receive_data(SESSION, 0.0)
    assert drain(host)[1] == EXPECTED_EVENTS[1]
    assert host.next_event() is PAUSED
    assert host.state is State.CONFIRMING
    assert host.data_to_send() == ACK_BYTE * len(SAMPLE_MESSAGE)  # ENQ + all frames but the L
    host.tick(100.0)  # no receiver timeout while the application commits
    assert host.state is State.CONFIRMING
    host.confirm_received(100.0)
    assert host.data_to_send() == ACK_BYTE
    assert drain(host) == [TransferEnded(direction=Direction.RECEIVING)]  # buffered EOT read now


def test_rejected_message_is_sent_again_and_delivered_again() -> None:
    decisions = iter([False, True])
    pair = ConnectionPair(decide=lambda _role, _message: next(decisions))
    number = pair.instrument.send_message(SAMPLE_MESSAGE, 0.0)
    pair.run()
    received = [e for e in pair.events[Role.HOST] if isinstance(e, MessageReceived)]
    assert [m.records for m in received] == [tuple(SAMPLE_MESSAGE)] * 2
    assert MessageSent(message_number=number) in pair.events[Role.INSTRUMENT]
    assert sum(isinstance(e, FrameRejected) for e in pair.events[Role.HOST]) == 0


def test_confirm_without_a_message_is_our_error() -> None:
    host = Connection(role=Role.HOST)
    with pytest.raises(LocalProtocolError):
        host.confirm_received(0.0)
    host.receive_data(ENQ_BYTE, 0.0)
    with pytest.raises(LocalProtocolError):
        host.reject_received(0.0)
    with pytest.raises(LocalProtocolError):
        host.send_message([], 0.0)
    with pytest.raises(LocalProtocolError):
        host.send_message([b"R|1\rP|2"], 0.0)


def test_frame_number_wraps_over_a_message_of_more_than_eight_frames() -> None:
    records = [SAMPLE_MESSAGE[0], *[b"R|%d|^^^HB|%d" % (n, n) for n in range(1, 11)], b"L|1|N"]
    pair = ConnectionPair()
    pair.instrument.send_message(records, 0.0)
    pair.run()
    frames = [piece for _, writer, piece in pair.transcript.pieces if piece[:1] == b"\x02"]
    assert [parse_frame(f).number for f in frames] == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4]
    received = [e for e in pair.events[Role.HOST] if isinstance(e, MessageReceived)]
    assert received[0].records == tuple(records)


def test_host_waits_10_s_after_busy_then_bids_again() -> None:
    host = Connection(role=Role.HOST)
    host.send_message(SAMPLE_MESSAGE, 0.0)
    assert host.data_to_send() == ENQ_BYTE
    host.receive_data(NAK_BYTE, 0.5)
    assert drain(host) == [BidRefused(reason=BidRefusal.BUSY, retry_at=10.5)]
    assert host.next_deadline() == 10.5
    host.tick(10.4)
    assert host.data_to_send() == b""
    host.tick(10.5)
    assert host.data_to_send() == ENQ_BYTE
    host.receive_data(ACK_BYTE, 11.0)
    assert host.data_to_send() == build_frames(SAMPLE_MESSAGE)[0]


def test_contention_the_instrument_wins_and_the_host_sends_afterwards() -> None:
    pair = ConnectionPair()
    host_message = [SAMPLE_MESSAGE[0], b"O|1|LAB1||^^^HB|R||||||N", b"L|1|N"]
    pair.host.send_message(host_message, 0.0)
    pair.instrument.send_message(SAMPLE_MESSAGE, 0.0)
    pair.run()
    host_events = pair.events[Role.HOST]
    instrument_events = pair.events[Role.INSTRUMENT]
    assert host_events[0] == BidRefused(reason=BidRefusal.CONTENTION, retry_at=20.0)
    assert instrument_events[0] == BidRefused(reason=BidRefusal.CONTENTION, retry_at=1.0)
    enqs = [(t, w) for t, w, piece in pair.transcript.pieces if piece == ENQ_BYTE]
    assert enqs[:3] == [(0.0, Role.HOST), (0.0, Role.INSTRUMENT), (1.0, Role.INSTRUMENT)]
    # the host bids again as soon as the instrument's transfer ends, well before its 20 s wait
    assert enqs[3] == (1.0, Role.HOST)
    received_by_host = [e.records for e in host_events if isinstance(e, MessageReceived)]
    received_by_instrument = [
        e.records for e in instrument_events if isinstance(e, MessageReceived)
    ]
    assert received_by_host == [tuple(SAMPLE_MESSAGE)]
    assert received_by_instrument == [tuple(host_message)]


def test_host_bids_again_after_20_s_if_the_instrument_does_not() -> None:
    host = Connection(role=Role.HOST)
    host.send_message(SAMPLE_MESSAGE, 0.0)
    host.receive_data(ENQ_BYTE, 0.1)
    assert host.data_to_send() == ENQ_BYTE  # our bid only; the colliding ENQ is not answered
    host.tick(20.0)
    assert host.data_to_send() == b""
    host.tick(20.1)
    assert host.data_to_send() == ENQ_BYTE


def test_sender_resends_a_refused_frame_six_times_in_all_then_aborts() -> None:
    instrument = Connection(role=Role.INSTRUMENT)
    number = instrument.send_message(SAMPLE_MESSAGE, 0.0)
    instrument.receive_data(ACK_BYTE, 0.0)
    first = build_frames(SAMPLE_MESSAGE)[0]
    written = instrument.data_to_send()
    for attempt in range(2, 7):
        instrument.receive_data(NAK_BYTE if attempt % 2 else b"?", float(attempt))
    instrument.receive_data(NAK_BYTE, 7.0)
    written += instrument.data_to_send()
    assert written == ENQ_BYTE + first * 6 + EOT_BYTE
    aborted = drain(instrument)[-1]
    assert aborted == TransferAborted(
        reason=AbortReason.TOO_MANY_ATTEMPTS,
        direction=Direction.SENDING,
        message_number=number,
        records=tuple(SAMPLE_MESSAGE),
    )
    assert instrument.state is State.NEUTRAL


def test_receiver_interrupt_stops_the_sender_for_15_s() -> None:
    instrument = Connection(role=Role.INSTRUMENT)
    instrument.send_message(SAMPLE_MESSAGE, 0.0)
    instrument.receive_data(ACK_BYTE, 0.0)
    instrument.receive_data(ACK_BYTE + EOT_BYTE, 1.0)  # frame 1 accepted, frame 2 interrupted
    frames = build_frames(SAMPLE_MESSAGE)
    assert instrument.data_to_send() == ENQ_BYTE + frames[0] + frames[1] + EOT_BYTE
    assert drain(instrument)[-1].reason is AbortReason.RECEIVER_INTERRUPT  # type: ignore[union-attr]
    instrument.send_message(SAMPLE_MESSAGE, 2.0)
    instrument.tick(15.9)
    assert instrument.data_to_send() == b""
    instrument.tick(16.0)
    assert instrument.data_to_send() == ENQ_BYTE


def test_sender_gives_up_after_15_s_without_a_reply() -> None:
    instrument = Connection(role=Role.INSTRUMENT)
    instrument.send_message(SAMPLE_MESSAGE, 0.0)
    instrument.receive_data(ACK_BYTE, 1.0)
    instrument.data_to_send()
    instrument.tick(15.9)
    assert instrument.data_to_send() == b""
    instrument.tick(16.0)
    assert instrument.data_to_send() == EOT_BYTE
    assert drain(instrument)[-1].reason is AbortReason.NO_REPLY  # type: ignore[union-attr]


def test_unanswered_bid_ends_with_eot_and_is_tried_again() -> None:
    instrument = Connection(role=Role.INSTRUMENT)
    instrument.send_message(SAMPLE_MESSAGE, 0.0)
    instrument.tick(15.0)
    assert instrument.data_to_send() == ENQ_BYTE + EOT_BYTE
    assert drain(instrument) == [BidRefused(reason=BidRefusal.NO_REPLY, retry_at=25.0)]
    instrument.tick(25.0)
    assert instrument.data_to_send() == ENQ_BYTE
    assert instrument.queued_messages == 1


def test_receiver_discards_an_incomplete_message_after_30_s_without_a_frame() -> None:
    host = Connection(role=Role.HOST)
    frames = build_frames(SAMPLE_MESSAGE)
    host.receive_data(ENQ_BYTE + frames[0], 0.0)
    host.receive_data(frames[1], 10.0)
    host.tick(39.9)
    states = [host.state]
    host.tick(40.0)
    states.append(host.state)
    assert states == [State.RECEIVING, State.NEUTRAL]
    assert drain(host)[-1] == TransferAborted(
        reason=AbortReason.NO_FRAME,
        direction=Direction.RECEIVING,
        records=tuple(SAMPLE_MESSAGE[:2]),
    )
    host.receive_data(frames[2], 41.0)  # the rest arrives too late: ignored in neutral
    assert host.data_to_send() == ACK_BYTE * 3


def test_eot_without_a_terminator_delivers_what_came_as_incomplete() -> None:
    host = Connection(role=Role.HOST)
    frames = build_frames(SAMPLE_MESSAGE)
    host.receive_data(ENQ_BYTE + frames[0] + frames[1] + frames[2][:20] + EOT_BYTE, 0.0)
    # the EOT sits inside the unfinished third frame: it is not taken as the end
    assert host.state is State.RECEIVING
    host.receive_data(b"\r\n" + EOT_BYTE, 1.0)
    events = drain(host)
    assert isinstance(events[-3], FrameRejected)
    assert events[-2] == MessageReceived(
        records=tuple(SAMPLE_MESSAGE[:2]), needs_confirmation=False, complete=False
    )
    assert events[-1] == TransferEnded(direction=Direction.RECEIVING)


def test_receiver_naks_bad_frames_and_acks_a_repeated_one() -> None:
    host = Connection(role=Role.HOST)
    frames = build_frames(SAMPLE_MESSAGE)
    host.receive_data(ENQ_BYTE + frames[0], 0.0)
    assert host.data_to_send() == ACK_BYTE * 2
    host.receive_data(frames[0], 0.1)  # repeated after a lost ACK
    host.receive_data(frames[2], 0.2)  # skips a frame number
    host.receive_data(b"noise" + frames[1][:-5] + b"00\r\n", 0.3)  # bad checksum
    host.receive_data(build_frame(2, b"P|1\x12\r", last=True), 0.4)  # DC2 in the text
    host.receive_data(frames[1], 0.5)
    assert host.data_to_send() == ACK_BYTE + NAK_BYTE * 3 + ACK_BYTE
    rejected = [e for e in drain(host) if isinstance(e, FrameRejected)]
    assert [r.frame_number for r in rejected] == [3, None, None]


def test_neutral_line_ignores_everything_but_enq() -> None:
    host = Connection(role=Role.HOST)
    host.receive_data(ACK_BYTE + NAK_BYTE + EOT_BYTE + b"\x021L|1|N\r\x0304\r\n", 0.0)
    assert host.data_to_send() == b""
    assert host.state is State.NEUTRAL
    assert drain(host) == []


def test_messages_queue_and_go_one_per_transfer_phase() -> None:
    pair = ConnectionPair()
    first = pair.host.send_message(SAMPLE_MESSAGE, 0.0)
    second = pair.host.send_message(SAMPLE_MESSAGE[:1] + SAMPLE_MESSAGE[-1:], 0.0)
    pair.run()
    sent = [e for e in pair.events[Role.HOST] if isinstance(e, MessageSent)]
    assert [e.message_number for e in sent] == [first, second]
    host_bytes = b"".join(
        piece for _, writer, piece in pair.transcript.pieces if writer is Role.HOST
    )
    assert host_bytes.count(ENQ_BYTE) == 2
    assert host_bytes.count(EOT_BYTE) == 2
