"""The lab module's test kit: what the tests, the fault drills, the benchmarks and the demo day
need to play the world around the lab module, written once.

- `database`: scratch databases on a PostgreSQL server, made by the Alembic migrations, seeded
  with the demo catalog and users, dropped afterwards.
- `patients`: valid fødselsnummer, D- and H-numbers, and synthetic patients.
- `orders`: OML^O21 orders as the record sends them, and orders placed through the service.
- `results`: result reports (the values of an ORU^R01) for codec tests and benchmarks.
- `mllp`: the record's sending side (MLLP client that reads each ACK whole).
- `record`: the record's receiving side, a fake record with behaviours (AA, AE, AR, slow, cut,
  down) that ACKs with the lab module's own ACK builder.
- `serial`: serial lines on pseudo-terminals (os.openpty, or a socat pair).
- `api`: a client of the JSON API with a bearer token.
- `process`: `lab serve` as a child process on a database with its own ports.

It is not shipped in the wheel (pyproject.toml includes only lab, instruments and migrations):
it needs a checkout. Everything here runs on loopback, real sockets and real ptys.
"""
