"""Analyser connections from the TOML file named by `LAB_INSTRUMENTS_FILE` (docs/analysers.md).

When the setting is unset the demo file next to this module is used: one analyser speaking
ASTM over TCP, with the lab module as the server on 127.0.0.1:5001 (`LAB_DEMO_ASTM_PORT`
overrides the port), profile `generic`, whose instrument test codes are the lab's own codes
(docs/analysers.md). Everything binds to loopback unless the file says otherwise.
"""

from __future__ import annotations

import codecs
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from instruments.profiles import PROFILES, FieldRef
from lab.config import Settings
from lab.errors import InvalidInput
from lab.peers import LOOPBACK, Network, parse_networks

DEMO_FILE = Path(__file__).with_name("demo_instruments.toml")

FlowControl = Literal["none", "rtscts", "xonxoff", "dsrdtr"]
_PARITIES = ("N", "E", "O", "M", "S")
_FLOW_CONTROLS = ("none", "rtscts", "xonxoff", "dsrdtr")


class ConfigError(InvalidInput):
    """The instruments file cannot be used; the message names the instrument and the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpSettings:
    """ASTM over TCP (E1381-02 TCP/IP section): same framing, a byte stream instead of a line."""

    mode: Literal["server", "client"]  # server: the analyser connects in; client: we connect out
    host: str = "127.0.0.1"
    port: int
    reconnect_initial: float = 1.0  # client mode: first wait after a failed connect, doubled...
    reconnect_max: float = 30.0  # ...up to this many seconds
    allowed_peers: tuple[Network, ...] = LOOPBACK  # server mode: who may connect

    def describe(self) -> str:
        verb = "listens on" if self.mode == "server" else "connects to"
        return f"tcp {self.mode} ({verb} {self.host}:{self.port})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialSettings:
    """An RS-232 line through pyserial; `port` is a device or any pyserial URL."""

    port: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    flow_control: FlowControl = "none"
    reopen_initial: float = 1.0
    reopen_max: float = 30.0

    def describe(self) -> str:
        frame = f"{self.bytesize}{self.parity}{self.stopbits:g}"
        return f"serial {self.port} {self.baudrate} {frame} flow {self.flow_control}"


@dataclass(frozen=True, slots=True, kw_only=True)
class InstrumentConfig:
    name: str
    profile: str
    transport: TcpSettings | SerialSettings
    encoding: str | None = None  # None: the profile's character set
    tests: Mapping[str, str] = field(default_factory=dict)  # instrument code -> local code
    local_codes: bool = False  # instrument codes are the lab's local codes (demo analyser)
    order_download: bool = False  # push orders when a specimen is received
    qc_prefixes: tuple[str, ...] = ("QC",)  # specimen IDs of control material
    timezone: str = "Europe/Oslo"  # analyser clocks run in local time (LIS2-A2 timestamps)
    host_name: str = "LAB"  # our name in the H records we send
    # Where this analyser puts the specimen ID (`O-3`, `O-4.3`, `Q-3.2`, ...), in order of
    # preference; None: the profile's own list.
    specimen_fields: tuple[FieldRef, ...] | None = None
    # The analyser's codes of the serum indices it sends as R records ({"h": ..., "i": ...,
    # "l": ...}): taken out of the results and given to each result of the specimen, so the
    # rules can hold one the index interferes with (potassium and haemolysis).
    serum_indices: Mapping[str, str] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def wall_clock(self, moment: datetime) -> datetime:
        """`moment` as the analyser's clock shows it: its local time, without a zone, which is
        how LIS2-A2 timestamps are written (H-14, O-7, O-8, ...). A moment without a zone is
        taken to be UTC (how the lab stores time)."""
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        return aware.astimezone(self.zone).replace(tzinfo=None)

    def read_clock(self, moment: datetime | None) -> datetime | None:
        """A timestamp the analyser sent (its local time, no zone) as an aware datetime. In the
        hour that occurs twice when clocks go back, the first (summer time) reading is taken;
        a time skipped when clocks go forward is read with the offset before the change."""
        if moment is None:
            return None
        # In UTC: an aware time in the repeated hour compares unequal to every other zone's
        # (PEP 495), so it is turned into the instant it names at once.
        aware = moment.replace(tzinfo=self.zone) if moment.tzinfo is None else moment
        return aware.astimezone(UTC)

    def local_code(self, instrument_code: str) -> str | None:
        """The lab's test code for what the analyser calls `instrument_code`, if mapped."""
        code = instrument_code.strip()
        mapped = self.tests.get(code)
        if mapped is not None:
            return mapped
        if self.local_codes and code:
            return code.upper()
        return None

    def instrument_code(self, local_code: str) -> str | None:
        """What the analyser calls the lab's test `local_code`, if it runs it."""
        for instrument_code, mapped in self.tests.items():
            if mapped == local_code:
                return instrument_code
        return local_code if self.local_codes else None

    def is_control(self, specimen_id: str) -> bool:
        return any(specimen_id.startswith(prefix) for prefix in self.qc_prefixes if prefix)


def load_instruments(settings: Settings) -> list[InstrumentConfig]:
    """The configured analysers; the demo analyser when `LAB_INSTRUMENTS_FILE` is unset."""
    if settings.instruments_file is not None:
        return load_file(settings.instruments_file)
    configs = load_file(DEMO_FILE)
    return [
        replace(c, transport=replace(c.transport, port=settings.demo_astm_port))
        if isinstance(c.transport, TcpSettings)
        else c
        for c in configs
    ]


def load_file(path: Path) -> list[InstrumentConfig]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read instruments file {path}: {error}") from error
    return parse_config(data, source=str(path))


def parse_config(
    data: Mapping[str, Any], *, source: str = "instruments file"
) -> list[InstrumentConfig]:
    entries = data.get("instrument", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: use [[instrument]] tables")
    configs: list[InstrumentConfig] = []
    for index, entry in enumerate(entries, start=1):
        where = f"{source}, instrument {index}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        name = _text(entry, "name", where)
        where = f"{source}, instrument {name!r}"
        profile = _text(entry, "profile", where)
        if profile not in PROFILES:
            raise ConfigError(f"{where}: unknown profile {profile!r} ({', '.join(PROFILES)})")
        encoding = entry.get("encoding")
        if encoding is not None:
            try:
                codecs.lookup(str(encoding))
            except LookupError:
                raise ConfigError(f"{where}: unknown encoding {encoding!r}") from None
        tests = entry.get("tests", {})
        if not isinstance(tests, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tests.items()
        ):
            raise ConfigError(f"{where}: [instrument.tests] maps instrument codes to local codes")
        timezone = str(entry.get("timezone", "Europe/Oslo"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}: unknown time zone {timezone!r}") from None
        specimen_fields = entry.get("specimen_fields")
        if specimen_fields is not None:
            if not isinstance(specimen_fields, list) or not specimen_fields:
                raise ConfigError(f"{where}: specimen_fields is a list like ['O-3', 'O-4.3']")
            try:
                refs = tuple(FieldRef.parse(str(f)) for f in specimen_fields)
            except ValueError as error:
                raise ConfigError(f"{where}: specimen_fields: {error}") from None
            if any(ref.record_type not in ("O", "Q") for ref in refs):
                raise ConfigError(f"{where}: specimen_fields name O or Q record fields")
        indices = entry.get("serum_indices", {})
        if (
            not isinstance(indices, dict)
            or not set(indices) <= {"h", "i", "l"}
            or not all(isinstance(v, str) and v.strip() for v in indices.values())
        ):
            raise ConfigError(
                f"{where}: serum_indices maps h, i and l to the analyser's codes of the indices"
            )
        prefixes = entry.get("qc_prefixes", ["QC"])
        if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
            raise ConfigError(f"{where}: qc_prefixes is a list of strings")
        configs.append(
            InstrumentConfig(
                name=name,
                profile=profile,
                transport=_transport(entry, where),
                encoding=str(encoding) if encoding is not None else None,
                tests={k.strip(): v.strip().upper() for k, v in tests.items()},
                local_codes=bool(entry.get("local_codes", False)),
                order_download=bool(entry.get("order_download", False)),
                qc_prefixes=tuple(prefixes),
                timezone=timezone,
                host_name=str(entry.get("host_name", "LAB")),
                specimen_fields=refs if specimen_fields is not None else None,
                serum_indices={k: v.strip() for k, v in indices.items()},
            )
        )
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: instrument names must be unique: {', '.join(duplicates)}")
    return configs


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key} is required")
    return value.strip()


def _allowed_peers(
    entry: Mapping[str, Any], mode: str, host: str, where: str
) -> tuple[Network, ...]:
    """`allowed_peers` of a server-mode analyser: required once it listens beyond loopback.

    Anyone who reaches an analyser port acts as the analyser (its results go to review, its
    order downloads go to it), so binding to the network without naming the analyser's
    address is refused rather than left open.
    """
    listed = entry.get("allowed_peers")
    if listed is None:
        listed = entry.get("tcp", {}).get("allowed_peers")
    if listed is None:
        local = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
        if mode == "server" and not local:
            raise ConfigError(
                f"{where}: listens on {host}: give allowed_peers, the analyser's address(es)"
            )
        return LOOPBACK
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise ConfigError(f"{where}: allowed_peers is a list of addresses or CIDRs")
    try:
        return parse_networks(listed, setting="allowed_peers")
    except InvalidInput as error:
        raise ConfigError(f"{where}: {error.message}") from None


def _transport(entry: Mapping[str, Any], where: str) -> TcpSettings | SerialSettings:
    tcp, serial = entry.get("tcp"), entry.get("serial")
    if (tcp is None) == (serial is None):
        raise ConfigError(f"{where}: give exactly one of [instrument.tcp] or [instrument.serial]")
    if not isinstance(tcp or serial, dict):
        raise ConfigError(f"{where}: [instrument.tcp] or [instrument.serial] must be a table")
    if isinstance(tcp, dict):
        mode = tcp.get("mode", "server")
        if mode not in ("server", "client"):
            raise ConfigError(f"{where}: tcp.mode is server or client")
        port = tcp.get("port")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"{where}: tcp.port is a port number")
        host = str(tcp.get("host", "127.0.0.1"))
        return TcpSettings(
            mode=mode,
            host=host,
            port=port,
            allowed_peers=_allowed_peers(entry, mode, host, where),
            reconnect_initial=float(tcp.get("reconnect_initial", 1.0)),
            reconnect_max=float(tcp.get("reconnect_max", 30.0)),
        )
    if not isinstance(serial, dict):
        raise ConfigError(f"{where}: [instrument.serial] must be a table")
    port_name = serial.get("port")
    if not isinstance(port_name, str) or not port_name:
        raise ConfigError(f"{where}: serial.port names the device or pyserial URL")
    parity = str(serial.get("parity", "N")).upper()[:1]
    flow = str(serial.get("flow_control", "none"))
    bytesize = int(serial.get("bytesize", 8))
    stopbits = float(serial.get("stopbits", 1))
    if parity not in _PARITIES:
        raise ConfigError(f"{where}: serial.parity is one of {', '.join(_PARITIES)}")
    if flow not in _FLOW_CONTROLS:
        raise ConfigError(f"{where}: serial.flow_control is one of {', '.join(_FLOW_CONTROLS)}")
    if bytesize not in (5, 6, 7, 8) or stopbits not in (1, 1.5, 2):
        raise ConfigError(f"{where}: serial.bytesize is 5-8 and serial.stopbits 1, 1.5 or 2")
    return SerialSettings(
        port=port_name,
        baudrate=int(serial.get("baudrate", 9600)),
        bytesize=bytesize,
        parity=parity,
        stopbits=stopbits,
        flow_control=flow,  # type: ignore[arg-type]  # checked against _FLOW_CONTROLS above
        reopen_initial=float(serial.get("reopen_initial", 1.0)),
        reopen_max=float(serial.get("reopen_max", 30.0)),
    )
