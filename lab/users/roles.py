"""Roles and what each may do. One table; every route and service check reads it."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    TECHNICIAN = "technician"  # bioingeniør: receives specimens, enters results
    REVIEWER = "reviewer"  # may verify results
    PHYSICIAN = "physician"  # lab physician: verifies, corrects, merges patients
    ADMIN = "admin"  # manages users, tokens and the catalog
    INSTRUMENT = "instrument"  # an analyser connection acting as a user
    INTERFACE = "interface"  # the record's HL7/JSON integration acting as a user
    DISPLAY = "display"  # a wall screen: the overview's counts and lists, no patient names


class Permission(StrEnum):
    READ_PATIENT_DATA = "read_patient_data"
    MANAGE_PATIENTS = "manage_patients"
    MERGE_PATIENTS = "merge_patients"
    PLACE_ORDERS = "place_orders"
    CANCEL_ORDERS = "cancel_orders"
    HANDLE_SPECIMENS = "handle_specimens"
    ENTER_RESULTS = "enter_results"
    VERIFY_RESULTS = "verify_results"
    CORRECT_RESULTS = "correct_results"
    READ_AUDIT = "read_audit"
    MANAGE_CATALOG = "manage_catalog"
    MANAGE_USERS = "manage_users"
    READ_CATALOG = "read_catalog"
    OPERATE_INTERFACES = "operate_interfaces"
    VIEW_ANALYSERS = "view_analysers"  # connection state, QC; no patient data
    READ_WORKLIST = "read_worklist"  # what an analyser is to run; accession numbers and tests
    RESOLVE_UNMATCHED = "resolve_unmatched"  # a person's decision on what an analyser sent
    ENTER_QC = "enter_qc"  # type in control results; retry or discard the QC queue
    MANAGE_QC = "manage_qc"  # control materials, lots, targets, rule policies
    OVERRIDE_QC_LOCK = "override_qc_lock"  # release a QC lock without an in-control run
    MANAGE_RULES = "manage_rules"  # load rule set versions, run them in shadow, replay them
    ACTIVATE_RULES = "activate_rules"  # make a rule set version decide (lab physician only)
    VIEW_OVERVIEW = "view_overview"  # counts, accession numbers and tests; no patient data


_P = Permission
GRANTS: dict[Role, frozenset[Permission]] = {
    Role.TECHNICIAN: frozenset(
        {
            _P.READ_PATIENT_DATA,
            _P.VIEW_OVERVIEW,
            _P.PLACE_ORDERS,
            _P.CANCEL_ORDERS,
            _P.HANDLE_SPECIMENS,
            _P.ENTER_RESULTS,
            _P.READ_CATALOG,
            _P.VIEW_ANALYSERS,
            _P.READ_WORKLIST,
            _P.RESOLVE_UNMATCHED,
            _P.ENTER_QC,
        }
    ),
    Role.REVIEWER: frozenset(
        {
            _P.READ_PATIENT_DATA,
            _P.VIEW_OVERVIEW,
            _P.HANDLE_SPECIMENS,
            _P.ENTER_RESULTS,
            _P.VERIFY_RESULTS,
            _P.READ_CATALOG,
            _P.VIEW_ANALYSERS,
            _P.READ_WORKLIST,
            _P.RESOLVE_UNMATCHED,
            _P.ENTER_QC,
        }
    ),
    Role.PHYSICIAN: frozenset(
        {
            _P.READ_PATIENT_DATA,
            _P.VIEW_OVERVIEW,
            _P.MANAGE_PATIENTS,
            _P.MERGE_PATIENTS,
            _P.PLACE_ORDERS,
            _P.CANCEL_ORDERS,
            _P.HANDLE_SPECIMENS,
            _P.ENTER_RESULTS,
            _P.VERIFY_RESULTS,
            _P.CORRECT_RESULTS,
            _P.READ_AUDIT,
            _P.READ_CATALOG,
            _P.VIEW_ANALYSERS,
            _P.READ_WORKLIST,
            _P.RESOLVE_UNMATCHED,
            # the lab physician answers for the method: sets QC up and may release a lock
            _P.ENTER_QC,
            _P.MANAGE_QC,
            _P.OVERRIDE_QC_LOCK,
            _P.MANAGE_RULES,
            _P.ACTIVATE_RULES,
        }
    ),
    Role.ADMIN: frozenset(
        {
            _P.MANAGE_RULES,
            _P.MANAGE_USERS,
            _P.MANAGE_CATALOG,
            _P.READ_CATALOG,
            _P.READ_AUDIT,
            _P.OPERATE_INTERFACES,
            _P.VIEW_ANALYSERS,
            _P.READ_WORKLIST,
            _P.MANAGE_QC,
        }
    ),
    Role.INSTRUMENT: frozenset(
        {_P.ENTER_RESULTS, _P.HANDLE_SPECIMENS, _P.READ_CATALOG, _P.READ_WORKLIST}
    ),
    Role.DISPLAY: frozenset({_P.VIEW_OVERVIEW}),
    Role.INTERFACE: frozenset(
        {
            _P.READ_PATIENT_DATA,
            _P.MANAGE_PATIENTS,
            _P.MERGE_PATIENTS,
            _P.PLACE_ORDERS,
            _P.CANCEL_ORDERS,
            _P.READ_CATALOG,
        }
    ),
}


def permissions_of(roles: list[str]) -> frozenset[Permission]:
    granted: set[Permission] = set()
    for name in roles:
        try:
            granted |= GRANTS[Role(name)]
        except ValueError:
            continue  # a role name from an older version grants nothing
    return frozenset(granted)


# Accounts that analysers and the record's integration act as: no password (tokens only, made
# by the operator on the server) and no person role beside them.
MACHINE_ROLES: frozenset[Role] = frozenset({Role.INSTRUMENT, Role.INTERFACE})
# Roles that open patient data or sign results. Giving one (to anyone) is for the operator on
# the server (`lab user add` / `lab user roles`), never for the web administrator alone: an
# administrator who could make a physician account with a password they know could act as one.
CLINICAL_ROLES: frozenset[Role] = frozenset(
    role
    for role, grants in GRANTS.items()
    if role not in MACHINE_ROLES
    and grants & {Permission.READ_PATIENT_DATA, Permission.VERIFY_RESULTS}
)
# Roles the operator alone may grant: clinical and machine roles.
OPERATOR_ROLES: frozenset[Role] = CLINICAL_ROLES | MACHINE_ROLES


def holds_any(roles: list[str], wanted: frozenset[Role]) -> bool:
    return any(name in {role.value for role in wanted} for name in roles)


def holds_only(roles: list[str], allowed: frozenset[Role]) -> bool:
    return set(roles) <= {role.value for role in allowed}
