"""`lab`: serve the lab module and look after it. Every command honours the LAB_* settings."""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import logging
import secrets
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

import instruments.cli
from lab.audit import Actor
from lab.catalog.service import load_catalog_file
from lab.config import Settings, get_settings
from lab.db import database_url, make_engine, make_session_factory, runtime_url, transaction
from lab.demo import seed
from lab.errors import LabError
from lab.migrate import upgrade
from lab.rulesets.cli import register as register_rules
from lab.serve import serve
from lab.users import service as users
from lab.users import tokens
from lab.users.roles import MACHINE_ROLES

# `demo run` plays its day with the test kit (testkit/), which is in a checkout but not in the
# wheel: an installed lab module has `demo seed` only.
DEMO_DAY = importlib.util.find_spec("testkit") is not None
if DEMO_DAY:
    from lab.demo_day import register as register_demo_day


def _factory(settings: Settings) -> sessionmaker[Session]:
    return make_session_factory(make_engine(runtime_url(settings), pool_size=2))


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(database_url(settings), args.revision)
    print(f"database schema at {args.revision}")
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    machine = bool(args.role) and set(args.role) <= {role.value for role in MACHINE_ROLES}
    if args.no_password or (machine and not args.password_stdin):
        password = None  # a machine account uses tokens only
    elif args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = secrets.token_urlsafe(12)
    with transaction(_factory(settings)) as session:
        users.create_user(
            session,
            actor=Actor.system("cli"),
            username=args.username,
            display_name=args.name or args.username,
            roles=args.role,
            password=password,
            title=args.title,
        )
    print(f"user {args.username} added with roles {', '.join(args.role)}")
    if password is None:
        print("no password: a machine account signs in with tokens (lab token create) only")
    if password and not args.password_stdin:
        print(f"password (shown once): {password}")
    return 0


def cmd_user_password(args: argparse.Namespace, settings: Settings) -> int:
    password = getpass.getpass("new password: ") if sys.stdin.isatty() else sys.stdin.readline()
    with transaction(_factory(settings)) as session:
        users.set_password(
            session,
            actor=Actor.system("cli"),
            username=args.username,
            password=password.strip(),
            end_tokens=settings.password_change_ends_tokens,
        )
    ended = "sessions and tokens" if settings.password_change_ends_tokens else "sessions"
    print(f"password of {args.username} changed; their {ended} ended")
    return 0


def cmd_user_active(args: argparse.Namespace, settings: Settings) -> int:
    active = args.user_command == "enable"
    with transaction(_factory(settings)) as session:
        users.set_active(session, actor=Actor.system("cli"), username=args.username, active=active)
    print(
        f"user {args.username} enabled"
        if active
        else f"user {args.username} disabled; their sessions and tokens ended"
    )
    return 0


def cmd_user_roles(args: argparse.Namespace, settings: Settings) -> int:
    with transaction(_factory(settings)) as session:
        user = users.set_roles(
            session, actor=Actor.system("cli"), username=args.username, roles=args.role
        )
    print(f"user {args.username} has roles {', '.join(user.roles)}")
    return 0


def cmd_token_create(args: argparse.Namespace, settings: Settings) -> int:
    with transaction(_factory(settings)) as session:
        made = tokens.create_token(
            session,
            actor=Actor.system("cli"),
            username=args.username,
            label=args.label,
            days=args.days or settings.token_days,
        )
    print(
        f"API token {made.id} for {args.username}, expires {made.expires_at:%Y-%m-%d %H:%M} UTC "
        "(shown once; send as 'Authorization: Bearer ...'):"
    )
    print(made.token)
    return 0


def cmd_token_list(args: argparse.Namespace, settings: Settings) -> int:
    with _factory(settings)() as session:
        rows = tokens.list_tokens(session, args.username)
        print(f"{'id':>6}  {'state':8} {'created':16}  {'expires':16}  {'last used':16}  label")
        for row in rows:
            print(
                f"{row.id:>6}  {tokens.state_of(row):8} {_when(row.created_at)}  "
                f"{_when(row.expires_at)}  {_when(row.last_used_at)}  {row.label}"
            )
    return 0


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else f"{'-':16}"


def cmd_token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    with transaction(_factory(settings)) as session:
        tokens.revoke_token(session, actor=Actor.system("cli"), token_id=args.id)
    print(f"token {args.id} revoked")
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Seal what is committed, then recompute the whole chain; exit 1 if it is not intact."""
    from lab import audit_chain

    factory = _factory(settings)
    if args.seal:
        with transaction(factory) as session:
            audit_chain.seal(session)
    with factory() as session:
        report = audit_chain.verify(session)
    print(f"{report.sealed} audit rows sealed, {report.unsealed} not yet sealed")
    if report.broken_at is not None:
        print(f"CHAIN BROKEN at seal {report.broken_at}: {report.problem}")
    if report.unsealed_old:
        print(f"{report.unsealed_old} rows older than 10 minutes are not sealed")
    print("audit chain intact" if report.intact else "audit chain NOT intact")
    return 0 if report.intact else 1


def cmd_demo_seed(args: argparse.Namespace, settings: Settings) -> int:
    with transaction(_factory(settings)) as session:
        made = seed(session, password=settings.demo_password)
    print("demo catalog and users are in place")
    for username, password in made.items():
        shown = "(LAB_DEMO_PASSWORD)" if settings.demo_password else password
        print(f"  demo user {username:6s} password: {shown}")
    return 0


def cmd_catalog_load(args: argparse.Namespace, settings: Settings) -> int:
    with transaction(_factory(settings)) as session:
        count = load_catalog_file(session, actor=Actor.system("cli"), path=Path(args.file))
    print(f"{count} tests loaded from {args.file}")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    return serve(settings, host=args.host, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab",
        description="The lab module (LIS) of the regional health record. "
        "Settings come from LAB_* environment variables (see docs/operations.md).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the lab module: web UI, API, listeners, analyser links",
        description="Apply migrations, seed the demo when LAB_DEMO=1 on an empty database, and "
        "run the web UI and JSON API with every configured interface, in the foreground.",
    )
    serve.add_argument("--host", help="HTTP address (default LAB_HTTP_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default LAB_HTTP_PORT or 8000)")
    serve.set_defaults(run=cmd_serve)

    db = commands.add_parser("db", help="database schema", description="Database schema.")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade",
        help="apply the Alembic migrations",
        description="Apply the Alembic migrations (the only way the schema is made).",
    )
    upgrade.add_argument("revision", nargs="?", default="heads")
    upgrade.set_defaults(run=cmd_db_upgrade)

    user = commands.add_parser("user", help="user accounts", description="User accounts.")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = user_commands.add_parser(
        "add",
        help="add a user",
        description="Add a user. Without --password-stdin a random password is printed once.",
    )
    add.add_argument("username")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        help="technician, reviewer, physician, admin, instrument or interface (repeatable)",
    )
    add.add_argument("--name", help="display name")
    add.add_argument(
        "--title", default="", help='title printed after the name on reports, e.g. "overlege"'
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--no-password", action="store_true", help="machine account: tokens only")
    add.set_defaults(run=cmd_user_add)
    password = user_commands.add_parser(
        "password", help="set a user's password", description="Set a user's password."
    )
    password.add_argument("username")
    password.set_defaults(run=cmd_user_password)
    for verb, what in (
        ("disable", "disable a user: their sessions end and their tokens are revoked at once"),
        ("enable", "enable a disabled user again (their old tokens stay revoked)"),
    ):
        switch = user_commands.add_parser(verb, help=what, description=what.capitalize() + ".")
        switch.add_argument("username")
        switch.set_defaults(run=cmd_user_active)
    roles = user_commands.add_parser(
        "roles",
        help="set a user's roles (the only way to give a clinical or machine role)",
        description="Give USER exactly these roles. Clinical roles (technician, reviewer, "
        "physician) and machine roles (instrument, interface) are given here, by the operator, "
        "not on the web.",
    )
    roles.add_argument("username")
    roles.add_argument("--role", action="append", required=True, help="a role (repeatable)")
    roles.set_defaults(run=cmd_user_roles)

    token = commands.add_parser("token", help="API tokens", description="API tokens.")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    create = token_commands.add_parser(
        "create",
        help="print a new API token for a user",
        description="Make a new API token for USER; the token is the last line of the output.",
    )
    create.add_argument("username", metavar="USER")
    create.add_argument("--label", default="", help="what the token is for")
    create.add_argument(
        "--days", type=int, default=0, help="days until it expires (default LAB_TOKEN_DAYS, 90)"
    )
    create.set_defaults(run=cmd_token_create)
    listing = token_commands.add_parser(
        "list",
        help="list a user's tokens",
        description="List USER's tokens: id, state, created, expires, last used (never the "
        "token itself, which is not stored).",
    )
    listing.add_argument("username", metavar="USER")
    listing.set_defaults(run=cmd_token_list)
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token", description="Revoke the token with this id."
    )
    revoke.add_argument("id", type=int, metavar="ID")
    revoke.set_defaults(run=cmd_token_revoke)

    audit = commands.add_parser("audit", help="the audit trail", description="The audit trail.")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_commands.add_parser(
        "verify",
        help="check the audit hash chain",
        description="Recompute the hash chain over every sealed audit row; exit status 1 if a row "
        "was changed or removed, or rows older than 10 minutes are not sealed.",
    )
    verify.add_argument(
        "--seal", action="store_true", help="seal the committed rows first (as the job does)"
    )
    verify.set_defaults(run=cmd_audit_verify)

    demo = commands.add_parser("demo", help="demo data", description="Demo data.")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True, metavar="COMMAND")
    seed = demo_commands.add_parser(
        "seed",
        help="load the demo catalog and demo users",
        description="Load the demo catalog (if no tests exist) and the demo users admin, bio and "
        "lege (if no users exist); their passwords are printed once.",
    )
    seed.set_defaults(run=cmd_demo_seed)
    if DEMO_DAY:
        register_demo_day(demo_commands)

    catalog = commands.add_parser("catalog", help="test catalog", description="Test catalog.")
    catalog_commands = catalog.add_subparsers(
        dest="catalog_command", required=True, metavar="COMMAND"
    )
    load = catalog_commands.add_parser(
        "load",
        help="load tests and panels from a TOML file",
        description="Create or replace tests and panels from a catalog TOML file "
        "(the format of lab/catalog/demo_catalog.toml).",
    )
    load.add_argument("file")
    load.set_defaults(run=cmd_catalog_load)
    instruments.cli.register(commands)
    register_rules(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.run(args, get_settings())
    except LabError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem.field}: {problem.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
