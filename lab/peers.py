"""Who may open a connection to a listener, and how many at once (no I/O).

The HL7 listener and every server-mode analyser port ask a `ConnectionGate` before they read a
byte from a new connection. The gate refuses a peer whose address is not in the allowed
networks, and a connection beyond the listener's or the peer's cap; the caller closes the socket
and logs the refusal. Without a cap an unauthenticated peer could hold thousands of connections
(each a task and its buffers) and exhaust the memory of the process.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from lab.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The default of every listener: only this machine may connect.
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def parse_networks(entries: str | Iterable[str], *, setting: str) -> tuple[Network, ...]:
    """Addresses and CIDRs (`10.1.2.3`, `10.1.0.0/16`, `fd00::/8`), comma-separated or listed.

    An empty value means loopback only. A host name is refused: the check is made on the
    address the connection comes from, and a name would be resolved once, at start.
    """
    items = entries.split(",") if isinstance(entries, str) else list(entries)
    networks: list[Network] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise InvalidInput.field(
                setting, f"{text!r} is not an IP address or CIDR (e.g. 10.20.0.0/16)"
            ) from None
    return tuple(networks) or LOOPBACK


def peer_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of a peer (IPv4-mapped IPv6 addresses as IPv4); None if not an address."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a connection was not let in; `over_cap` tells a full listener from a stranger."""

    reason: str
    over_cap: bool


@dataclass(slots=True, kw_only=True)
class ConnectionGate:
    """Admits connections from `allowed` networks, at most `max_connections` at once in all
    and `max_per_peer` from one address."""

    allowed: tuple[Network, ...] = LOOPBACK
    max_connections: int = 128
    max_per_peer: int = 32
    open_by_peer: Counter[str] = field(default_factory=Counter)
    refused: int = 0

    @property
    def open_connections(self) -> int:
        return sum(self.open_by_peer.values())

    def allows(self, address: str) -> bool:
        parsed = peer_address(address)
        return parsed is not None and any(parsed in network for network in self.allowed)

    def admit(self, address: str) -> Refusal | None:
        """None when the connection may go on (and is counted until `release`), else why not."""
        refusal: Refusal | None = None
        if not self.allows(address):
            refusal = Refusal(reason=f"{address} is not an allowed peer", over_cap=False)
        elif self.open_connections >= self.max_connections:
            refusal = Refusal(
                reason=f"{self.max_connections} connections are open already", over_cap=True
            )
        elif self.open_by_peer[address] >= self.max_per_peer:
            refusal = Refusal(
                reason=f"{address} has {self.max_per_peer} connections open already",
                over_cap=True,
            )
        if refusal is not None:
            self.refused += 1
            return refusal
        self.open_by_peer[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open_by_peer[address] -= 1
        if self.open_by_peer[address] <= 0:
            del self.open_by_peer[address]
