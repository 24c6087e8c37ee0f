from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.reports.fonts import (
    DEFAULT_FONT_DIRS,
    ReportFonts,
    fit_text,
    load_fonts,
    printable_text,
    text_width,
)

from .builders import SAMI_FAMILY, SAMI_GIVEN

HAS_DEJAVU = any((folder / "DejaVuSans.ttf").is_file() for folder in DEFAULT_FONT_DIRS)
NAME_LETTERS = "aåæøbcčdđeghijklmnŋoprsštŧuvzžʒǯǥǧǩáâäöïńõÅÆØČĐŊŠŦŽÁ -'"


@pytest.fixture(scope="module")
def vera(tmp_path_factory: pytest.TempPathFactory) -> ReportFonts:
    # An empty search path: the DejaVu lookup fails and reportlab's own Vera is used.
    return load_fonts((tmp_path_factory.mktemp("no-fonts"),))


@pytest.mark.skipif(not HAS_DEJAVU, reason="DejaVu Sans is not installed")
def test_dejavu_draws_every_norwegian_and_sami_letter() -> None:
    fonts = load_fonts()
    assert "DejaVuSans" in fonts.source
    name = SAMI_FAMILY + SAMI_GIVEN
    assert printable_text(name, fonts) == name


def test_vera_fallback_prints_base_letters_for_what_it_lacks(vera: ReportFonts) -> None:
    assert vera.source.endswith("Vera.ttf")
    assert ord("ŋ") not in vera.coverage  # what makes the fallback necessary
    assert printable_text("Ŋuolja Åsbø Čáhppe", vera) == "Nuolja Åsbø Čáhppe"
    assert printable_text("Ŧiŧi ǥ ǯ ʒ ń", vera) == "Titi g z z n"


def test_helvetica_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lab.reports.fonts as fonts_module

    monkeypatch.setattr(fonts_module, "_REPORTLAB_FONT_DIR", tmp_path)
    fonts = fonts_module._load_fonts((tmp_path / "none",))
    assert fonts.regular == "Helvetica"
    assert printable_text("Åse Ŋuolja ≤", fonts) == "Åse Nuolja <="


def test_control_and_format_characters_are_dropped() -> None:
    fonts = load_fonts()
    # A right-to-left override would print the rest of the name backwards.
    assert printable_text("Ola\u202eNor\x00mann\u200d", fonts) == "OlaNormann"
    assert printable_text("linje1\nlinje2\tx", fonts) == "linje1 linje2 x"


def test_unknown_characters_become_a_question_mark(vera: ReportFonts) -> None:
    assert printable_text("漢", vera) == "?"


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=NAME_LETTERS, max_size=120),
    max_size=st.floats(min_value=5, max_value=16),
    width=st.floats(min_value=1, max_value=300),
)
def test_fitted_text_never_exceeds_the_width(text: str, max_size: float, width: float) -> None:
    fonts = load_fonts()
    font = fonts.regular
    fitted = fit_text(text, font_name=font, max_size=max_size, min_size=5, max_width=width)
    assert fitted.width <= width
    assert fitted.width == pytest.approx(text_width(fitted.text, font, fitted.font_size))
    assert 5 <= fitted.font_size <= max_size
    if not fitted.truncated:
        assert fitted.text == text
        assert fitted.shrunk == (fitted.font_size < max_size)
    elif fitted.text:
        assert fitted.text.endswith("…")
        assert text.startswith(fitted.text[:-1])
        assert fitted.font_size == 5  # truncation only after shrinking as far as allowed


def test_fit_prefers_shrinking_to_truncating() -> None:
    font = load_fonts().regular
    text = "Ærøy-Østby, Åse Kristin"
    full = text_width(text, font, 8)
    fitted = fit_text(text, font_name=font, max_size=8, min_size=5, max_width=full * 0.8)
    assert fitted.text == text and fitted.shrunk and not fitted.truncated
    fitted = fit_text(text, font_name=font, max_size=8, min_size=5, max_width=full * 0.3)
    assert fitted.truncated and fitted.text.endswith("…")
