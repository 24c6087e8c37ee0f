"""Reads a Code 128 symbol back from the bars drawn in a PDF page, without a scanner.

The bars are the filled rectangles of the page's content stream; their widths and the gaps
between them, divided by the module, give the element widths. Those are looked up in the
symbol table and decoded with the Code 128 rules (ISO/IEC 15417: start A/B/C, code set
switches, modulo-103 check character, stop). Only the width table comes from reportlab;
the decoding and the check character are done here, independently of reportlab's encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from pypdf import PageObject
from reportlab.graphics.barcode.code128 import _patterns

START_A, START_B, START_C, STOP = 103, 104, 105, 106


def _element_widths(pattern: str) -> tuple[int, ...]:
    # reportlab writes a symbol as letters: upper case a bar, lower case a space, A/a = 1 module.
    return tuple(ord(letter.lower()) - ord("a") + 1 for letter in pattern)


SYMBOLS = {_element_widths(pattern): value for value, pattern in _patterns.items()}


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float


def filled_rectangles(page: PageObject) -> list[Bar]:
    """Filled `re` rectangles of a page in page coordinates (translations and scales only)."""
    matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    stack: list[list[float]] = []
    pending: list[Bar] = []
    bars: list[Bar] = []
    contents = page.get_contents()
    if contents is None:
        return []
    for operands, operator in contents.operations:
        if operator == b"q":
            stack.append(matrix[:])
        elif operator == b"Q":
            matrix = stack.pop()
        elif operator == b"cm":
            a, b, c, d, e, f = (float(v) for v in operands)
            assert b == 0 and c == 0, "rotation is not expected on a label"
            ma, _, _, md, me, mf = matrix
            matrix = [a * ma, 0.0, 0.0, d * md, e * ma + me, f * md + mf]
        elif operator == b"re":
            x, y, w, h = (float(v) for v in operands)
            ma, _, _, md, me, mf = matrix
            pending.append(Bar(x * ma + me, y * md + mf, w * ma, h * md))
        elif operator in (b"f", b"f*", b"F", b"B", b"B*"):
            bars.extend(pending)
            pending = []
        elif operator in (b"n", b"S", b"s"):
            pending = []
    return bars


def decode_bars(bars: list[Bar], module: float) -> str:
    """The data of the symbol whose bars these are, checked against its check character."""
    bars = sorted(bars, key=lambda bar: bar.x)
    widths: list[int] = []
    for index, bar in enumerate(bars):
        if index:
            gap = bar.x - (bars[index - 1].x + bars[index - 1].width)
            widths.append(_modules(gap, module))
        widths.append(_modules(bar.width, module))
    if len(widths) < 19 or (len(widths) - 7) % 6:
        raise ValueError(f"{len(widths)} elements do not make a Code 128 symbol")
    values = [SYMBOLS[tuple(widths[i : i + 6])] for i in range(0, len(widths) - 7, 6)]
    if SYMBOLS.get(tuple(widths[-7:])) != STOP:  # 2 3 3 1 1 1 2, the bar after it included
        raise ValueError("no stop pattern")
    *data, check = values
    if sum(value * max(1, position) for position, value in enumerate(data)) % 103 != check:
        raise ValueError("check character does not match")
    return _decode_values(data)


def _modules(width: float, module: float) -> int:
    count = round(width / module)
    if abs(width - count * module) > 0.05 * module or not 1 <= count <= 4:
        raise ValueError(f"element of {width:.3f} pt is not 1-4 modules of {module:.3f} pt")
    return count


def _decode_values(values: list[int]) -> str:
    start, *data = values
    code_set = {START_A: "A", START_B: "B", START_C: "C"}[start]
    text: list[str] = []
    for value in data:
        if code_set == "C":
            if value < 100:
                text.append(f"{value:02d}")
            elif value == 100:
                code_set = "B"
            elif value == 101:
                code_set = "A"
            else:
                raise ValueError(f"FNC1 ({value}) is not expected in an accession number")
        elif value < 96:
            if code_set == "B":
                text.append(chr(value + 32))
            else:
                text.append(chr(value + 32) if value < 64 else chr(value - 64))
        elif value == 99:
            code_set = "C"
        elif value == 100 and code_set == "A":
            code_set = "B"
        elif value == 101 and code_set == "B":
            code_set = "A"
        else:
            raise ValueError(f"symbol {value} (shift/FNC) is not expected in an accession number")
    return "".join(text)
