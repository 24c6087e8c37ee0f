"""The HL7 v2.5.1 interface with the record.

`codec/` is the pure protocol code (ER7, MLLP framing, ACKs, message mapping): bytes in, typed
values and bytes out, no I/O. Beside it: the listener, inbox and handlers of inbound messages,
the message log, and the dispatcher that delivers what the outbox holds. This package imports
nothing here on purpose: the codec sits on a lower floor than the rest (docs/architecture.md).
"""
