"""The ground floor: every table of the lab module, one module per feature.

Each module holds a feature's SQLAlchemy tables and, beside the columns, the enums of the
statuses stored in them. Every feature imports tables from here, never from another feature,
so no feature has to reach sideways or upward for a table (docs/architecture.md). Importing
this package fills `Base.metadata` completely (Alembic, tests).
"""

from lab.db import Base
from lab.tables.audit import AuditEvent
from lab.tables.catalog import CatalogVersion, LabTest, Panel, PanelMember, ReferenceInterval
from lab.tables.hl7 import INBOUND, OUTBOUND, Hl7Message, PendingRelease, ReportedResult
from lab.tables.instruments import OrderDownload, QcResult, UnmatchedResult
from lab.tables.orders import (
    OPEN_TEST_STATUSES,
    Order,
    OrderedTest,
    OrderStatus,
    Priority,
    TestStatus,
)
from lab.tables.patients import Patient, PatientIdentifier, PatientMerge
from lab.tables.results import (
    RELEASED,
    MeasurementOrigin,
    Result,
    ResultStatus,
    ResultVersion,
    StoredMeasurement,
)
from lab.tables.specimens import Specimen, SpecimenEvent, SpecimenStatus
from lab.tables.turnaround import AnalyserMessageTiming, ArchiveCursor
from lab.tables.users import ApiToken, User, WebSession

__all__ = [
    "INBOUND",
    "OPEN_TEST_STATUSES",
    "OUTBOUND",
    "RELEASED",
    "AnalyserMessageTiming",
    "ApiToken",
    "ArchiveCursor",
    "AuditEvent",
    "Base",
    "CatalogVersion",
    "Hl7Message",
    "LabTest",
    "MeasurementOrigin",
    "Order",
    "OrderDownload",
    "OrderStatus",
    "OrderedTest",
    "Panel",
    "PanelMember",
    "Patient",
    "PatientIdentifier",
    "PatientMerge",
    "PendingRelease",
    "Priority",
    "QcResult",
    "ReferenceInterval",
    "ReportedResult",
    "Result",
    "ResultStatus",
    "ResultVersion",
    "Specimen",
    "SpecimenEvent",
    "SpecimenStatus",
    "StoredMeasurement",
    "TestStatus",
    "UnmatchedResult",
    "User",
    "WebSession",
]
