"""Turnaround time: the lab module's own share of the time from analyser to record.

Two spans are measured, because they are the ones the lab module controls:
(a) an analyser's last frame of a result message -> our ACK of it, which is sent only after the
    results are committed and so shown for review (from the raw traffic archive's times), and
(b) the verification (or hold release) that queued an ORU^R01 -> the record's ACK of it (from
    the HL7 message log's times). `GET /api/v1/reports/turnaround` reports both.
"""
