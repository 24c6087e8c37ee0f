"""Property tests of the link layer: two connections joined in memory through a faulty wire."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instruments.astm.constants import ACK, ACK_BYTE, ENQ_BYTE, EOT_BYTE, NAK_BYTE
from instruments.astm.errors import LocalProtocolError
from instruments.astm.events import (
    AbortReason,
    MessageReceived,
    MessageSent,
    TransferAborted,
)
from instruments.astm.frames import build_frames
from instruments.astm.link import Connection, Role, State
from instruments.astm.pair import ConnectionPair

from .support import SAMPLE_MESSAGE, FaultyWire, drain, messages

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(
    pair: ConnectionPair, sender: Role, records: list[bytes]
) -> tuple[list[MessageReceived], list[MessageSent | TransferAborted]]:
    receiver = Role.HOST if sender is Role.INSTRUMENT else Role.INSTRUMENT
    received = [e for e in pair.events[receiver] if isinstance(e, MessageReceived)]
    finished = [e for e in pair.events[sender] if isinstance(e, MessageSent | TransferAborted)]
    return received, finished


def check_nothing_wrong_delivered(received: list[MessageReceived], records: list[bytes]) -> None:
    for message in received:
        if message.complete:
            assert list(message.records) == records
        else:
            assert list(message.records) == records[: len(message.records)]


@FAST
@given(records=messages(), seed=st.integers(0, 2**32), sender=st.sampled_from(list(Role)))
def test_any_message_arrives_whole_through_any_fragmentation(
    records: list[bytes], seed: int, sender: Role
) -> None:
    pair = ConnectionPair(wire=FaultyWire(random.Random(seed)))
    pair.side(sender).send_message(records, 0.0)
    pair.run()
    received, finished = outcome(pair, sender, records)
    assert [m.records for m in received] == [tuple(records)]
    assert finished == [MessageSent(message_number=1)]
    assert pair.host.state is State.NEUTRAL and pair.instrument.state is State.NEUTRAL


@st.composite
def flips(draw: st.DrawFn, role: Role, *, spacing: int) -> dict[tuple[Role, int], int]:
    """Up to four single-bit errors, at least `spacing` bytes apart in one side's output."""
    starts = draw(st.lists(st.integers(0, 2500), max_size=4, unique=True))
    offsets: list[int] = []
    for start in sorted(starts):
        if not offsets or start - offsets[-1] >= spacing:
            offsets.append(start)
    return {(role, offset): 1 << draw(st.integers(0, 7)) for offset in offsets}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=messages(max_records=5),
    seed=st.integers(0, 2**32),
    sender_flips=flips(Role.INSTRUMENT, spacing=300),
    receiver_flips=flips(Role.HOST, spacing=1),
)
def test_bit_errors_lead_to_retransmission_or_a_clean_abort_never_a_wrong_record(
    records: list[bytes],
    seed: int,
    sender_flips: dict[tuple[Role, int], int],
    receiver_flips: dict[tuple[Role, int], int],
) -> None:
    # One error per frame at most: the sum checksum of E1381 cannot see every double error.
    wire = FaultyWire(random.Random(seed), flips=sender_flips | receiver_flips)
    pair = ConnectionPair(wire=wire)
    pair.instrument.send_message(records, 0.0)
    pair.run()
    received, finished = outcome(pair, Role.INSTRUMENT, records)
    check_nothing_wrong_delivered(received, records)
    assert len(finished) == 1
    if isinstance(finished[0], MessageSent):
        assert any(m.complete for m in received)
    if not sender_flips and not receiver_flips:
        assert finished == [MessageSent(message_number=1)]
    assert pair.host.state is State.NEUTRAL and pair.instrument.state is State.NEUTRAL


@FAST
@given(records=messages(max_records=4), seed=st.integers(0, 2**32), data=st.data())
def test_a_damaged_ack_makes_the_sender_repeat_and_the_receiver_drops_the_copy(
    records: list[bytes], seed: int, data: st.DataObject
) -> None:
    replies = 1 + len(build_frames(records))  # one per ENQ and frame
    damaged = data.draw(st.sets(st.integers(1, replies - 1), min_size=1, max_size=3))
    wire = FaultyWire(random.Random(seed), replace={(Role.HOST, i): 0x3F for i in damaged})
    pair = ConnectionPair(wire=wire)
    pair.instrument.send_message(records, 0.0)
    pair.run()
    received, finished = outcome(pair, Role.INSTRUMENT, records)
    assert [m.records for m in received] == [tuple(records)]
    assert finished == [MessageSent(message_number=1)]
    sent = b"".join(p for _, w, p in pair.transcript.pieces if w is Role.INSTRUMENT)
    assert sent.count(b"\x02") == len(build_frames(records)) + len(damaged)  # one copy each


def test_a_lost_ack_ends_in_the_senders_timeout() -> None:
    # ACK of frame 2 never arrives: the sender waits 15 s and aborts (LIS1-A 6.5.2.1); the
    # receiver then sees EOT and hands over what it has, marked incomplete.
    wire = FaultyWire(random.Random(1), drops=[(Role.HOST, 2)])
    pair = ConnectionPair(wire=wire)
    pair.instrument.send_message(SAMPLE_MESSAGE, 0.0)
    pair.run()
    received, finished = outcome(pair, Role.INSTRUMENT, SAMPLE_MESSAGE)
    assert [m.records for m in received] == [tuple(SAMPLE_MESSAGE[:2])]
    assert not received[0].complete
    assert isinstance(finished[0], TransferAborted)
    assert finished[0].reason is AbortReason.NO_REPLY


_FRAMES = build_frames(SAMPLE_MESSAGE)
_PEER_BYTES = st.sampled_from(
    [ENQ_BYTE, ACK_BYTE, NAK_BYTE, EOT_BYTE, b"\x02", b"\r\n", b"x", *_FRAMES, _FRAMES[1][:9]]
)
_ACTIONS = st.one_of(
    st.tuples(st.just("data"), st.lists(_PEER_BYTES, min_size=1, max_size=4).map(b"".join)),
    st.tuples(st.just("tick"), st.floats(0, 40)),
    st.tuples(st.just("send"), st.just(b"")),
    st.tuples(st.just("confirm"), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(role=st.sampled_from(list(Role)), actions=st.lists(_ACTIONS, max_size=40))
def test_no_input_in_any_state_breaks_the_machine(
    role: Role, actions: list[tuple[str, object]]
) -> None:
    connection = Connection(role=role)
    now = 0.0
    for kind, value in actions:
        if kind == "data":
            assert isinstance(value, bytes)
            connection.receive_data(value, now)
        elif kind == "tick":
            assert isinstance(value, float)
            now += value
            connection.tick(now)
        elif kind == "send":
            connection.send_message(SAMPLE_MESSAGE, now)
        else:
            awaiting = connection.state is State.CONFIRMING
            try:
                if value:
                    connection.confirm_received(now)
                else:
                    connection.reject_received(now)
                assert awaiting
            except LocalProtocolError:
                assert not awaiting
        drain(connection)
        written = connection.data_to_send()
        # only single control characters and whole frames ever leave
        rest = written
        for frame in _FRAMES:
            rest = rest.replace(frame, b"")
        assert set(rest) <= {ACK, 0x04, 0x05, 0x15}
        assert connection.state in set(State)
        deadline = connection.next_deadline()
        assert deadline is None or deadline >= 0


@pytest.mark.parametrize("bit", range(8))
def test_every_single_bit_error_in_the_terminator_frame_is_survived(bit: int) -> None:
    frames = build_frames(SAMPLE_MESSAGE)
    start = 1 + sum(len(f) for f in frames[:-1])
    for offset in range(len(frames[-1])):
        wire = FaultyWire(random.Random(bit), flips={(Role.INSTRUMENT, start + offset): 1 << bit})
        pair = ConnectionPair(wire=wire)
        pair.instrument.send_message(SAMPLE_MESSAGE, 0.0)
        pair.run()
        received, finished = outcome(pair, Role.INSTRUMENT, SAMPLE_MESSAGE)
        check_nothing_wrong_delivered(received, SAMPLE_MESSAGE)
        assert len(finished) == 1
