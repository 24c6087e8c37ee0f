"""Imports every feature's tables so `Base.metadata` is complete (Alembic, tests)."""

from instruments.models import OrderDownload, QcResult, UnmatchedResult
from lab.audit import AuditEvent
from lab.catalog.models import LabTest, Panel, PanelMember, ReferenceInterval
from lab.db import Base
from lab.orders.models import Order, OrderedTest
from lab.patients.models import Patient, PatientIdentifier, PatientMerge
from lab.results.models import Result, ResultVersion
from lab.specimens.models import Specimen, SpecimenEvent
from lab.users.models import ApiToken, User, WebSession

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Base",
    "LabTest",
    "Order",
    "OrderDownload",
    "OrderedTest",
    "Panel",
    "PanelMember",
    "Patient",
    "PatientIdentifier",
    "PatientMerge",
    "QcResult",
    "ReferenceInterval",
    "Result",
    "ResultVersion",
    "Specimen",
    "SpecimenEvent",
    "UnmatchedResult",
    "User",
    "WebSession",
]
