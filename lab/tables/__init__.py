"""The ground floor: every table of the lab module, one module per feature.

Each module holds a feature's SQLAlchemy tables and, beside the columns, the enums of the
statuses stored in them. Every feature imports tables from here, never from another feature,
so no feature has to reach sideways or upward for a table (docs/architecture.md). Importing
this package fills `Base.metadata` completely (Alembic, tests).
"""

from lab.db import Base
from lab.tables.audit import AuditEvent
from lab.tables.catalog import CatalogVersion, LabTest, Panel, PanelMember, ReferenceInterval
from lab.tables.hl7 import (
    HL7_INBOUND_STATUSES,
    HL7_LIFECYCLE,
    HL7_OUTBOUND_STATUSES,
    HL7_UNDELIVERED,
    HL7_WAITING,
    INBOUND,
    OUTBOUND,
    Hl7Message,
    Hl7Status,
    PendingRelease,
    ReportedResult,
)
from lab.tables.instruments import (
    DownloadStatus,
    OrderDownload,
    QcResult,
    UnmatchedResult,
    UnmatchedStatus,
)
from lab.tables.lifecycle import Lifecycle, sql_list
from lab.tables.orders import (
    ORDER_CLOSED,
    ORDER_LIFECYCLE,
    TEST_CLOSED,
    TEST_LIFECYCLE,
    TEST_OPEN,
    TEST_PENDING,
    Order,
    OrderedTest,
    OrderStatus,
    Priority,
    TestStatus,
)
from lab.tables.patients import Patient, PatientIdentifier, PatientMerge
from lab.tables.results import (
    RELEASED,
    REPORTABLE,
    RESULT_LIFECYCLE,
    MeasurementOrigin,
    Result,
    ResultStatus,
    ResultVersion,
    StoredMeasurement,
)
from lab.tables.specimens import (
    SPECIMEN_FINISHED,
    SPECIMEN_IN_LAB,
    SPECIMEN_LIFECYCLE,
    SPECIMEN_NOT_YET_IN_LAB,
    Specimen,
    SpecimenEvent,
    SpecimenStatus,
)
from lab.tables.turnaround import AnalyserMessageTiming, ArchiveCursor
from lab.tables.users import ApiToken, User, WebSession

__all__ = [
    "HL7_INBOUND_STATUSES",
    "HL7_LIFECYCLE",
    "HL7_OUTBOUND_STATUSES",
    "HL7_UNDELIVERED",
    "HL7_WAITING",
    "INBOUND",
    "ORDER_CLOSED",
    "ORDER_LIFECYCLE",
    "OUTBOUND",
    "RELEASED",
    "REPORTABLE",
    "RESULT_LIFECYCLE",
    "SPECIMEN_FINISHED",
    "SPECIMEN_IN_LAB",
    "SPECIMEN_LIFECYCLE",
    "SPECIMEN_NOT_YET_IN_LAB",
    "TEST_CLOSED",
    "TEST_LIFECYCLE",
    "TEST_OPEN",
    "TEST_PENDING",
    "AnalyserMessageTiming",
    "ApiToken",
    "ArchiveCursor",
    "AuditEvent",
    "Base",
    "CatalogVersion",
    "DownloadStatus",
    "Hl7Message",
    "Hl7Status",
    "LabTest",
    "Lifecycle",
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
    "UnmatchedStatus",
    "User",
    "WebSession",
    "sql_list",
]
