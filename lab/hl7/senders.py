"""Which sending applications a caller of the HL7 listener may name in MSH-3/MSH-4 (no I/O).

MSH-3 (sending application) and MSH-4 (sending facility) are only text in the message: any peer
could write `EPIC`. With mutual TLS the listener knows who is calling from its client
certificate, and `LAB_MLLP_TLS_SENDERS` says which senders each certificate subject may use:

    LAB_MLLP_TLS_SENDERS='{"epic.hmn.no": ["EPIC^HMN", "EPIC^STOLAV"], "dips.example": ["DIPS"]}'

A key is the certificate's common name (CN) or its whole subject as `CN=...,O=...`; an entry is
`APPLICATION^FACILITY`, or `APPLICATION` alone for any facility. A message from a certificate
that is not listed, or naming a sender its certificate may not use, is refused with AR (ERR on
MSH-3, HL7 table 0357 code 103: the value is not in the table of applications this lab knows,
user table 0361) and kept in the message log with the caller's address and subject.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "serialNumber": "serialNumber",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateSubject:
    """The subject of a verified client certificate."""

    common_name: str
    text: str  # e.g. "CN=epic.hmn.no,O=Helse Midt-Norge"

    @classmethod
    def from_peercert(cls, peercert: Mapping[str, Any] | None) -> CertificateSubject | None:
        """From `SSLObject.getpeercert()`; None when no certificate was presented."""
        if not peercert:
            return None
        parts: list[str] = []
        common_name = ""
        for rdn in peercert.get("subject", ()):
            for name, value in rdn:
                short = _SHORT_NAMES.get(str(name), str(name))
                parts.append(f"{short}={value}")
                if short == "CN" and not common_name:
                    common_name = str(value)
        return cls(common_name=common_name, text=",".join(parts))


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who is on the other end of one listener connection."""

    address: str = ""  # host:port
    subject: CertificateSubject | None = None
    senders: tuple[str, ...] | None = None
    """MSH-3^MSH-4 values this caller may use; None: not restricted (no client certificates)."""

    def describe(self) -> str:
        """Address and certificate subject, for the message log and the audit."""
        if self.subject is None:
            return self.address
        return f"{self.address} [{self.subject.text}]"

    def may_send_as(self, application: str, facility: str) -> bool:
        if self.senders is None:
            return True
        return any(
            entry == application or entry == f"{application}^{facility}" for entry in self.senders
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderPolicy:
    """Certificate subject -> the senders it may name (`LAB_MLLP_TLS_SENDERS`)."""

    by_subject: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def caller(self, address: str, subject: CertificateSubject | None) -> Caller:
        if subject is None:
            return Caller(address=address, subject=None, senders=())
        allowed = self.by_subject.get(subject.text)
        if allowed is None and subject.common_name:
            allowed = self.by_subject.get(subject.common_name)
        return Caller(address=address, subject=subject, senders=tuple(allowed or ()))
