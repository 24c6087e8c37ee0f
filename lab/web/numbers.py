"""Numbers as the page's language writes them: `4,50` and a real minus sign in bokmål."""

from __future__ import annotations

from decimal import Decimal
from functools import cache

from babel import Locale

from lab.web.i18n import Language


def number(value: Decimal | int | float | None, language: Language = "nb") -> str:
    """As the language writes it, with the precision the value has (`4,50`), no exponent and no
    thousands grouping (a space inside a lab value reads as two values)."""
    if value is None:
        return ""
    if isinstance(value, float):
        value = Decimal(str(value))
    # Fixed-point text keeps the reported precision (Babel's own formatting would drop the
    # trailing zero of 4.50); the symbols are the locale's, from Babel's CLDR data.
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    symbols = _symbols(language)
    return text.replace("-", symbols["minusSign"]).replace(".", symbols["decimal"])


@cache
def _symbols(language: Language) -> dict[str, str]:
    found = Locale.parse("nb_NO" if language == "nb" else "en_GB").number_symbols["latn"]
    return {"minusSign": found["minusSign"], "decimal": found["decimal"]}


def signed_number(value: Decimal | None, language: Language = "nb") -> str:
    if value is None:
        return ""
    return ("+" if value > 0 else "") + number(value, language)
