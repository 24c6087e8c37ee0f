"""The demo rule documents (version 1 of each), as the seed loads them."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
DEMO_AUTOVERIFICATION = HERE / "demo_autoverification.toml"
DEMO_FORMULAS = HERE / "demo_formulas.toml"
DEMO_REFLEX = HERE / "demo_reflex.toml"


def demo_texts() -> dict[str, str]:
    """Rule document kind -> its text."""
    return {
        "autoverification": DEMO_AUTOVERIFICATION.read_text(encoding="utf-8"),
        "formulas": DEMO_FORMULAS.read_text(encoding="utf-8"),
        "reflex": DEMO_REFLEX.read_text(encoding="utf-8"),
    }
