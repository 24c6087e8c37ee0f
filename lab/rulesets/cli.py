"""`lab rules ...`: list, load, run in shadow, activate and replay rule set versions.

Run on the server by its operator, on behalf of a named user (`--user`), whose roles decide
what the command may do and who the audit trail names: loading and shadow need the permission
to manage rules, activation the lab physician's permission to activate them.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from lab.config import Settings
from lab.db import database_url, make_engine, make_session_factory, transaction
from lab.errors import NotFound
from lab.rulesets import service
from lab.users import service as users
from lab.users.roles import Permission


def _factory(settings: Settings):  # type: ignore[no-untyped-def]
    return make_session_factory(make_engine(database_url(settings)))


def _actor(session, username: str, permission: Permission):  # type: ignore[no-untyped-def]
    user = users.get_by_username(session, username)
    if user is None or not user.active:
        raise NotFound(f"no active user {username!r}")
    actor = users.actor_for(user, "cli")
    users.require(actor, permission)
    return actor


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    with transaction(_factory(settings)) as session:
        for row in service.list_versions(session, kind=args.kind):
            activated = f" activated by {row.activated_by}" if row.activated_by else ""
            print(
                f"{row.kind:16s} v{row.version:<4d} {row.state:8s} {row.sha256[:12]} "
                f"loaded by {row.created_by}{activated}  {row.description}"
            )
    return 0


def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    document = Path(args.file).read_text(encoding="utf-8")
    with transaction(_factory(settings)) as session:
        actor = _actor(session, args.user, Permission.MANAGE_RULES)
        row = service.load(
            session, actor=actor, kind=args.kind, document=document, description=args.description
        )
        print(f"{row.kind} v{row.version} loaded as a draft ({row.sha256[:12]})")
    return 0


def _state(args: argparse.Namespace, settings: Settings, state: str) -> int:
    needed = Permission.ACTIVATE_RULES if state == "active" else Permission.MANAGE_RULES
    with transaction(_factory(settings)) as session:
        actor = _actor(session, args.user, needed)
        row = service.change_state(
            session, actor=actor, kind=args.kind, version=args.version, state=state
        )
        print(f"{row.kind} v{row.version} is {row.state}")
    return 0


def cmd_activate(args: argparse.Namespace, settings: Settings) -> int:
    return _state(args, settings, "active")


def cmd_shadow(args: argparse.Namespace, settings: Settings) -> int:
    return _state(args, settings, "shadow")


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from lab.rulesets.replay import dry_run, replay
    from lab.rulesets.shadow import shadow_report

    since = datetime.fromisoformat(args.since) if args.since else None
    with transaction(_factory(settings)) as session:
        _actor(session, args.user, Permission.MANAGE_RULES)
        if args.kind == "autoverification":
            lines = replay(session, version=args.version, since=since).report_lines(
                limit=args.limit
            )
            # What the version decided in shadow on results as they came in, if it ran there.
            lines += shadow_report(session, version=args.version, limit=0).report_lines()
        else:
            lines = dry_run(
                session, kind=args.kind, version=args.version, since=since
            ).report_lines()
        session.rollback()  # a replay changes nothing
    for line in lines:
        print(line)
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    group = commands.add_parser(
        "rules",
        help="rule set versions: list, load, shadow, activate, replay",
        description=__doc__,
    )
    sub = group.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    kinds = ["autoverification", "formulas", "reflex"]

    listing = sub.add_parser("list", help="every rule set version and its state")
    listing.add_argument("--kind", choices=kinds)
    listing.set_defaults(run=cmd_list)

    load = sub.add_parser(
        "load",
        help="check a rule document and store it as the next draft version",
        description="Parse and check a TOML rule document against the catalog; a document "
        "that does not parse or names an unknown test is refused with its lines.",
    )
    load.add_argument("kind", choices=kinds)
    load.add_argument("file")
    load.add_argument("--user", required=True, help="the person loading it")
    load.add_argument("--description", default="")
    load.set_defaults(run=cmd_load)

    for name, run, text in (
        ("shadow", cmd_shadow, "run a version beside the active one; it releases nothing"),
        ("activate", cmd_activate, "make a version decide (lab physician); audited"),
    ):
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("kind", choices=kinds)
        command.add_argument("version", type=int)
        command.add_argument("--user", required=True, help="the person doing it")
        command.set_defaults(run=run)

    again = sub.add_parser(
        "replay",
        help="what an autoverification version would have released, and every disagreement",
        description="Judge every stored result with the given autoverification version and "
        "print how many it would have released and every disagreement with what people "
        "decided (results it would have released that a person corrected, cancelled or has not "
        "verified, first). Changes nothing; the same history gives the same figures.",
    )
    again.add_argument("version", type=int)
    again.add_argument(
        "--kind",
        choices=kinds,
        default="autoverification",
        help="formulas / reflex: a dry run (how many results it would calculate or add, a sample)",
    )
    again.add_argument("--user", required=True, help="the person asking")
    again.add_argument("--since", help="only results recorded since (ISO date/time)")
    again.add_argument("--limit", type=int, default=200, help="disagreements listed (default 200)")
    again.set_defaults(run=cmd_replay)
