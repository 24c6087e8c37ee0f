"""Fonts for the printed reports, and fitting text to a width by measuring it.

A TrueType font is embedded so that æ ø å and the Sami letters (á č đ ŋ š ŧ ž, and ǥ ǧ ǩ ʒ ǯ
of Skolt Sami) print on any printer. In order of preference:
  1. DejaVu Sans (Debian `fonts-dejavu-core`, /usr/share/fonts/truetype/dejavu/): has them all.
  2. Bitstream Vera, shipped inside reportlab/fonts: has æøå and á č đ š ž but not ŋ ŧ ń ǥ ǧ ǩ
     ʒ ǯ; those are printed as their base letter (ŋ as n, ŧ as t) so a name stays readable.
  3. Helvetica (a PDF standard font, WinAnsi encoding): æøå but no Sami letters beyond š ž;
     the rest fall back the same way.
Any character the chosen font lacks becomes its base letter or "?", never an empty box, and
control and format characters (bidi overrides, zero-width joiners) are dropped.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import reportlab
from reportlab.lib.fonts import addMapping
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

# Where Debian, Fedora and Arch put DejaVu Sans.
DEFAULT_FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/share/fonts/TTF"),
)
_REPORTLAB_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
ELLIPSIS = "…"

# Letters with a stroke or a hook have no Unicode decomposition, so NFKD cannot find their
# base letter; these are the ones in Sami orthographies (Northern, Lule, South, Inari, Skolt).
_BASE_LETTERS = {
    "ŋ": "n", "Ŋ": "N", "ŧ": "t", "Ŧ": "T", "đ": "d", "Đ": "D", "ǥ": "g", "Ǥ": "G",
    "ʒ": "z", "Ʒ": "Z", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ʹ": "'", "ˈ": "'",
    "≤": "<=", "≥": ">=", "–": "-", "—": "-", "…": "...", "−": "-",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReportFonts:
    """Registered reportlab font names and the characters they can draw."""

    regular: str
    bold: str
    family: str  # for <b> in Paragraph markup
    source: str  # the file it came from, or "Helvetica"
    coverage: frozenset[int]

    @property
    def ellipsis(self) -> str:
        return ELLIPSIS if ord(ELLIPSIS) in self.coverage else "..."


def _register_ttf_pair(regular: Path, bold: Path, family: str) -> ReportFonts:
    regular_name, bold_name = f"{family}", f"{family}-Bold"
    registered = set(pdfmetrics.getRegisteredFontNames())
    if regular_name not in registered:
        pdfmetrics.registerFont(TTFont(regular_name, str(regular)))
    if bold_name not in registered:
        pdfmetrics.registerFont(TTFont(bold_name, str(bold)))
    # Map the family so that <b> in a Paragraph picks the bold face; italics are not used.
    addMapping(family, 0, 0, regular_name)
    addMapping(family, 1, 0, bold_name)
    addMapping(family, 0, 1, regular_name)
    addMapping(family, 1, 1, bold_name)
    regular_cmap = pdfmetrics.getFont(regular_name).face.charToGlyph
    bold_cmap = pdfmetrics.getFont(bold_name).face.charToGlyph
    coverage = frozenset(code for code in regular_cmap if code in bold_cmap and code >= 0x20)
    return ReportFonts(
        regular=regular_name, bold=bold_name, family=family, source=str(regular), coverage=coverage
    )


def _helvetica() -> ReportFonts:
    coverage = set()
    for code in range(0x20, 0x3000):
        try:
            chr(code).encode("cp1252")
        except UnicodeEncodeError:
            continue
        coverage.add(code)
    return ReportFonts(
        regular="Helvetica",
        bold="Helvetica-Bold",
        family="Helvetica",
        source="Helvetica",
        coverage=frozenset(coverage),
    )


def load_fonts(search_dirs: Sequence[Path] = DEFAULT_FONT_DIRS) -> ReportFonts:
    """Register and return the best font found: DejaVu Sans, then reportlab's Vera, Helvetica."""
    return _load_fonts(tuple(search_dirs))


@functools.cache
def _load_fonts(search_dirs: tuple[Path, ...]) -> ReportFonts:
    for folder in search_dirs:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return _register_ttf_pair(regular, bold, "LabDejaVuSans")
    regular, bold = _REPORTLAB_FONT_DIR / "Vera.ttf", _REPORTLAB_FONT_DIR / "VeraBd.ttf"
    if regular.is_file() and bold.is_file():
        return _register_ttf_pair(regular, bold, "LabVera")
    return _helvetica()


def printable_text(text: str, fonts: ReportFonts) -> str:
    """The text as the font can draw it: one line, missing letters replaced by their base."""
    drawn: list[str] = []
    for character in unicodedata.normalize("NFC", text):
        if character in "\t\n\r\v\f\u2028\u2029":
            drawn.append(" ")
            continue
        if unicodedata.category(character) in {"Cc", "Cf", "Cs", "Co", "Cn"}:
            continue
        if ord(character) in fonts.coverage:
            drawn.append(character)
            continue
        drawn.append(_substitute(character, fonts))
    return "".join(drawn)


def _substitute(character: str, fonts: ReportFonts) -> str:
    candidates = [_BASE_LETTERS.get(character, "")]
    decomposed = unicodedata.normalize("NFKD", character)
    # The base of a decomposed letter may itself need a stand-in: ǯ is ʒ + caron, ʒ is z.
    candidates.append(
        "".join(
            c if ord(c) in fonts.coverage else _BASE_LETTERS.get(c, c)
            for c in decomposed
            if not unicodedata.combining(c)
        )
    )
    for candidate in candidates:
        if candidate and all(ord(c) in fonts.coverage for c in candidate):
            return candidate
    if unicodedata.combining(character):
        return ""  # a stray accent the font cannot place: drop it rather than print "?"
    return "?"


def text_width(text: str, font_name: str, font_size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font_name, font_size))


@dataclass(frozen=True, slots=True, kw_only=True)
class FittedText:
    text: str
    font_name: str
    font_size: float
    width: float
    shrunk: bool
    truncated: bool


def fit_text(
    text: str,
    *,
    font_name: str,
    max_size: float,
    min_size: float,
    max_width: float,
    ellipsis: str = ELLIPSIS,
) -> FittedText:
    """Largest size in [min_size, max_size] at which the text fits; else truncate at min_size.

    The text must already be printable (see printable_text). Width scales linearly with size,
    so one measurement gives the size; it is then re-measured, because the result is what
    the caller draws and what tests check against.
    """
    width = text_width(text, font_name, max_size)
    if width <= max_width:
        return FittedText(
            text=text,
            font_name=font_name,
            font_size=max_size,
            width=width,
            shrunk=False,
            truncated=False,
        )
    # Quarter points: finer steps make no visible difference on a 203 dpi head.
    size = math.floor(max_size * max_width / width * 4) / 4
    if size >= min_size:
        width = text_width(text, font_name, size)
        while width > max_width and size - 0.25 >= min_size:
            size -= 0.25
            width = text_width(text, font_name, size)
        if width <= max_width:
            return FittedText(
                text=text,
                font_name=font_name,
                font_size=size,
                width=width,
                shrunk=True,
                truncated=False,
            )
    return _truncate(text, font_name, min_size, max_width, ellipsis)


def _truncate(
    text: str, font_name: str, size: float, max_width: float, ellipsis: str
) -> FittedText:
    # Longest prefix that fits with the ellipsis after it (binary search: widths only grow).
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        candidate = text[:middle].rstrip() + ellipsis
        if text_width(candidate, font_name, size) <= max_width:
            low = middle
        else:
            high = middle - 1
    shown = text[:low].rstrip() + ellipsis
    width = text_width(shown, font_name, size)
    if width > max_width:
        shown, width = "", 0.0
    return FittedText(
        text=shown, font_name=font_name, font_size=size, width=width, shrunk=True, truncated=True
    )
