"""Imports every feature's tables so `Base.metadata` is complete (Alembic, tests)."""

from instruments.models import OrderDownload, QcResult, UnmatchedResult
from lab.audit import AuditEvent
from lab.catalog.models import LabTest, Panel, PanelMember, ReferenceInterval
from lab.db import Base
from lab.hl7.models import Hl7Message, PendingRelease, ReportedResult
from lab.orders.models import Order, OrderedTest
from lab.patients.models import Patient, PatientIdentifier, PatientMerge
from lab.results.models import Result, ResultVersion
from lab.specimens.models import Specimen, SpecimenEvent
from lab.turnaround.models import AnalyserMessageTiming, ArchiveCursor
from lab.users.models import ApiToken, User, WebSession

__all__ = [
    "AnalyserMessageTiming",
    "ApiToken",
    "ArchiveCursor",
    "AuditEvent",
    "Base",
    "Hl7Message",
    "LabTest",
    "Order",
    "OrderDownload",
    "OrderedTest",
    "Panel",
    "PanelMember",
    "Patient",
    "PatientIdentifier",
    "PatientMerge",
    "PendingRelease",
    "QcResult",
    "ReferenceInterval",
    "ReportedResult",
    "Result",
    "ResultVersion",
    "Specimen",
    "SpecimenEvent",
    "UnmatchedResult",
    "User",
    "WebSession",
]
