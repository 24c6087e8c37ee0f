"""Bulk data for the core benchmarks: a database that already holds a million results.

Rows are made by INSERT ... SELECT over generate_series in PostgreSQL itself, so seeding a
million results takes a minute rather than an hour. Accession numbers start with `B` so they
can never clash with real ones (which are all digits).
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text


def bulk_orders(
    connection: Connection,
    *,
    first: int,
    count: int,
    patients: int,
    tests: list[str],
    resulted: bool,
    review_share: float = 0.0,
) -> None:
    """`count` orders, one tube per container, every test of `tests` on each order.

    With `resulted`, each ordered test has a result and one version: verified, except a share
    `review_share` left awaiting review. Without it the tests are pending on received tubes.
    """
    params = {
        "first": first,
        "last": first + count - 1,
        "patients": patients,
        "tests": tests,
        "share": review_share,
    }
    connection.execute(
        text(
            """
            INSERT INTO lab_order (id, placer_order_number, placer_namespace, filler_order_number,
                patient_id, ordering_clinician, ordering_location, priority, clinical_info,
                status, source, created_at)
            SELECT g, 'BP' || g, 'BENCH', 'BF' || g,
                   1 + (g % CAST(:patients AS bigint)), 'bench', 'MED',
                   CASE WHEN g % 20 = 0 THEN 'stat' ELSE 'routine' END, '',
                   'active', 'bench', now() - make_interval(mins => CAST(:last - g AS int))
            FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
            """
        ),
        params,
    )
    connection.execute(
        text(
            """
            INSERT INTO specimen (id, accession_number, order_id, patient_id, specimen_type,
                container, status, received_at, created_at, rejection_comment, urgency)
            SELECT o.id * 4 + c.n, 'B' || (o.id * 4 + c.n), o.id, o.patient_id, c.specimen_type,
                   c.container,
                   CASE WHEN CAST(:resulted AS boolean) THEN 'completed' ELSE 'received' END,
                   o.created_at, o.created_at, '',
                   CASE WHEN o.priority = 'stat' THEN 0 ELSE 2 END
            FROM lab_order o
            JOIN (SELECT DISTINCT container, specimen_type,
                         dense_rank() OVER (ORDER BY container) AS n
                  FROM lab_test WHERE code = ANY(CAST(:tests AS text[]))) c ON true
            WHERE o.id BETWEEN CAST(:first AS bigint) AND CAST(:last AS bigint)
            """
        ).bindparams(resulted=resulted),
        params,
    )
    connection.execute(
        text(
            """
            INSERT INTO ordered_test (order_id, test_id, specimen_id, status, add_on,
                requested_at, cancel_reason)
            SELECT o.id, t.id, o.id * 4 + c.n,
                   CASE WHEN CAST(:resulted AS boolean) THEN 'verified' ELSE 'ordered' END, false,
                   o.created_at, ''
            FROM lab_order o
            JOIN lab_test t ON t.code = ANY(CAST(:tests AS text[]))
            JOIN (SELECT DISTINCT container, dense_rank() OVER (ORDER BY container) AS n
                  FROM lab_test WHERE code = ANY(CAST(:tests AS text[]))) c
              ON c.container = t.container
            WHERE o.id BETWEEN CAST(:first AS bigint) AND CAST(:last AS bigint)
            """
        ).bindparams(resulted=resulted),
        params,
    )
    if not resulted:
        return
    connection.execute(
        text(
            """
            INSERT INTO result (ordered_test_id, specimen_id, test_id, patient_id, urgency, version,
                status, value_numeric, unit, flags, observed_at, recorded_at, verified_at,
                verified_by)
            SELECT ot.id, ot.specimen_id, ot.test_id, o.patient_id,
                   CASE WHEN o.priority = 'stat' THEN 0 ELSE 2 END, 1,
                   CASE WHEN random() < CAST(:share AS float8)
                        THEN 'awaiting_review' ELSE 'verified' END,
                   round((random() * 100)::numeric, 1), t.unit, '{}', o.created_at,
                   o.created_at, o.created_at, 'bench'
            FROM ordered_test ot
            JOIN lab_order o ON o.id = ot.order_id
            JOIN lab_test t ON t.id = ot.test_id
            WHERE ot.order_id BETWEEN CAST(:first AS bigint) AND CAST(:last AS bigint)
            """
        ),
        params,
    )
    connection.execute(
        text(
            """
            INSERT INTO result_version (result_id, version, status, value_numeric, unit, flags,
                instrument_flags, instrument, operator, observed_at, author, reason, comment,
                critical_notification, created_at)
            SELECT r.id, 1, r.status, r.value_numeric, r.unit, '{}', '', 'bench', '',
                   r.observed_at, 'bench', '', '', '', r.recorded_at
            FROM result r JOIN ordered_test ot ON ot.id = r.ordered_test_id
            WHERE ot.order_id BETWEEN CAST(:first AS bigint) AND CAST(:last AS bigint)
            """
        ),
        params,
    )


def bulk_patients(connection: Connection, count: int, *, first: int = 1) -> None:
    """Patients `first` .. `first + count - 1`, each with a local identifier."""
    params = {"first": first, "last": first + count - 1}
    connection.execute(
        text(
            """
            INSERT INTO patient (id, family_name, given_name, birth_date, sex, created_at,
                updated_at)
            SELECT g, 'Bench ' || g, 'Pasient', date '1950-01-01' + CAST(g % 20000 AS int),
                   CASE WHEN g % 2 = 0 THEN 'F' ELSE 'M' END, now(), now()
            FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
            """
        ),
        params,
    )
    # A local identifier each (PID-3 of the ORU the autoverified results go out in).
    connection.execute(
        text(
            """
            INSERT INTO patient_identifier (patient_id, value, authority, kind)
            SELECT g, 'BENCH' || g, 'BENCH', 'OTHER'
            FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g
            """
        ),
        params,
    )


def fix_sequences(connection: Connection) -> None:
    for table in ("patient", "lab_order", "specimen"):
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        )
    connection.execute(text("ANALYZE"))


def settle(engine: Engine) -> None:
    """VACUUM ANALYZE, as autovacuum would have done long since in a database that grew to this
    size over months: index-only scans then skip the table (the visibility map is set)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
