"""No patient data in the logs of the HL7 side.

Bad messages carrying a known fødselsnummer and name are fed to the listener over a real socket,
including failures whose exception text repeats the values (a handler bug, a database error
with the clashing key); every log line of every logger is captured and scanned: neither the
number, nor the name, nor anything shaped like a fødselsnummer may appear.
"""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy.exc import IntegrityError

from lab.hl7 import inbox as inbox_module
from lab.hl7.inbox import Inbox
from testkit.mllp import ClosedBeforeAnswer
from testkit.patients import random_national_number
from tests.hl7.conftest import LoopThread, RunningListener, exchange, msa, oml, unique

NAME = "Gjertrudsdatter"
ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")


def scan(text: str, fnr: str) -> None:
    assert fnr not in text
    assert NAME not in text
    assert not ELEVEN_DIGITS.search(text), "something shaped like a fødselsnummer was logged"


def test_bad_messages_leave_no_patient_data_in_the_logs(
    listener: RunningListener,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    fnr = random_national_number()
    wrong_check_digit = fnr[:10] + str((int(fnr[10]) + 1) % 10)
    bad = [
        oml(control_id=unique("C"), placer=unique("P"), fnr=fnr, family=NAME * 20),  # too long
        oml(control_id=unique("C"), placer=unique("P"), fnr=fnr, family=NAME, tests=(("X", "L"),)),
        oml(
            control_id=unique("C"),
            placer=unique("P"),
            fnr=wrong_check_digit,
            family=NAME,
        ),
        oml(control_id=unique("C"), placer=unique("P"), fnr=fnr, family=NAME).replace(
            "|F", "|Q"
        ),  # sex not in table 0001
        f"MSH|^~\\&|EPIC|HMN|LAB|STOLAV|20261127||ADT^A08|{unique('C')}|P|2.5.1\r"
        f'PID|1||{fnr}^^^NOR&2.16.578.1.12.4.1.4.1&ISO^FNR||""^{NAME}|||M\r',
    ]
    answers = loop_thread.run(exchange(listener.port, bad))
    assert [msa(answer)[0] for answer in answers] == ["AE"] * len(bad)

    # A handler bug whose exception text repeats the values: answered AE, logged without them.
    def buggy(*args: object, **kwargs: object) -> object:
        raise ValueError(f"cannot handle {fnr} {NAME}")

    monkeypatch.setattr(inbox_module, "handle", buggy)
    [answer] = loop_thread.run(
        exchange(
            listener.port,
            [oml(control_id=unique("C"), placer=unique("P"), fnr=fnr, family=NAME)],
        )
    )
    assert msa(answer)[0] == "AE"

    # A database error naming the key that clashed: no answer (the sender resends), and the
    # log line has the error's class and SQLSTATE, not its text.
    def clash(self: Inbox, *args: object, **kwargs: object) -> dict[str, object]:
        raise IntegrityError(
            "INSERT INTO patient_identifier ...",
            {},
            Exception(f"Key (value)=({fnr}) already exists; {NAME}"),
        )

    monkeypatch.setattr(Inbox, "_finish", clash)
    with pytest.raises(ClosedBeforeAnswer):
        loop_thread.run(
            exchange(
                listener.port,
                [oml(control_id=unique("C"), placer=unique("P"), fnr=fnr, family=NAME)],
            )
        )
    text = caplog.text + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    assert "IntegrityError" in text and "ValueError" in text  # the failures were logged
    scan(text, fnr)
