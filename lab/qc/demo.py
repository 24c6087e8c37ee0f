"""The demo QC set-up (`demo_qc.toml`): demo figures, not a real lot's insert (docs/qc.md)."""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lab.audit import Actor
from lab.qc import materials
from lab.tables.qc import QcMaterial

DEMO_QC = Path(__file__).with_name("demo_qc.toml")


def seed_demo_qc(session: Session, *, actor: Actor, path: Path = DEMO_QC) -> int:
    """Load the demo control materials, lots, control IDs and targets into an empty QC set-up.
    Returns the number of targets made (0 when any material exists already)."""
    if session.scalar(select(func.count()).select_from(QcMaterial)):
        return 0
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    made = 0
    for entry in data["material"]:
        material = materials.add_material(
            session,
            actor=actor,
            name=entry["name"],
            level=int(entry["level"]),
            manufacturer=entry.get("manufacturer", ""),
            description=f"{entry['description']}; demo figures, not a real lot's insert",
        )
        lot = materials.add_lot(
            session,
            actor=actor,
            material_id=material.id,
            lot_number=entry["lot"],
            expires_on=date.fromisoformat(entry["expires_on"]),
        )
        materials.map_control_id(
            session, actor=actor, control_id=entry["control_id"], lot_id=lot.id
        )
        for target in entry["targets"]:
            materials.set_target(
                session,
                actor=actor,
                lot_id=lot.id,
                test_code=target["test"],
                unit=target["unit"],
                mean=Decimal(target["mean"]),
                sd=Decimal(target["sd"]),
            )
            made += 1
    return made
