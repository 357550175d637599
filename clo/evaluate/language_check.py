"""Language Confusion Benchmark line-level pass rate (LPR) with lingua-language-detector.

Rules (LCB, Marchisio et al. 2024, plus our choices marked (ours)):
- A response is split into lines; a line is language-checked only when it has at least
  `min_words` words. A word is a whitespace-separated token containing a letter, so list
  markers, numbers and punctuation do not count. (ours) In scripts written without spaces
  (Han, Hiragana/Katakana, Thai, Lao, Khmer, Myanmar) every two such characters count as
  one word, rounded up: a Chinese line needs about 9 characters to be checked, close to the
  LCB's 5 words.
- A response passes when every checked line is identified as the expected language. A line
  lingua cannot decide (None) counts as not in the expected language.
- (ours) A response with no checked line (empty, or only short lines) neither passes nor
  fails: it is left out of the pass-rate denominator and counted as `no_kept_lines`.
"""

from __future__ import annotations

import functools
import logging
import math
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from clo.errors import CloError
from clo.languages import get_language, lingua_language

if TYPE_CHECKING:
    import lingua

logger = logging.getLogger(__name__)

Verdict = Literal["pass", "fail", "no_kept_lines"]

# The paper's languages and major languages a model drifts into. Malay is left out on
# purpose: lingua often labels Indonesian lines as Malay, which would fail correct answers.
DEFAULT_DETECTOR_CODES: tuple[str, ...] = (
    "en",
    "zh",
    "de",
    "ko",
    "id",
    "sw",
    "yo",
    "fr",
    "es",
    "pt",
    "it",
    "nl",
    "ru",
    "ja",
    "ar",
    "hi",
    "tr",
    "vi",
)

# Unicode script name prefixes (from unicodedata names) of scripts written without spaces.
_UNSPACED_PREFIXES = ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")


class LanguageCheckUnavailable(CloError):
    """The expected language is not one lingua can identify."""


@dataclass(frozen=True)
class LineVerdict:
    """One line of a response and what the check made of it."""

    text: str
    words: int
    kept: bool
    language: str | None  # ISO 639-1 code lingua detected; None when not kept or undecided
    ok: bool | None  # None when the line was not kept


@dataclass(frozen=True)
class ResponseVerdict:
    """The verdict on one response: pass / fail / no_kept_lines, with its lines."""

    verdict: Verdict
    lines: tuple[LineVerdict, ...]

    @property
    def kept_languages(self) -> list[str | None]:
        return [line.language for line in self.lines if line.kept]

    def entirely_in(self, code: str) -> bool:
        """True when the response has checked lines and all of them are `code`."""
        langs = self.kept_languages
        return bool(langs) and all(lang == code for lang in langs)


def is_unspaced_char(char: str) -> bool:
    """True for a character of a script written without spaces between words (Han, kana, ...)."""
    try:
        name = unicodedata.name(char)
    except ValueError:
        return False
    return name.startswith(_UNSPACED_PREFIXES)


def count_words(line: str) -> int:
    """Words in a line, counting two characters of an unspaced script as one word."""
    words = 0
    for token in line.split():
        if not any(ch.isalpha() for ch in token):
            continue
        unspaced = sum(1 for ch in token if ch.isalpha() and is_unspaced_char(ch))
        spaced_letters = any(ch.isalpha() and not is_unspaced_char(ch) for ch in token)
        words += math.ceil(unspaced / 2) + (1 if spaced_letters else 0)
    return words


def resolve_detector_codes(target: str, extra: Iterable[str] | None = None) -> tuple[str, ...]:
    """The language codes lingua chooses among: English, the target and the rest (deduplicated)."""
    codes = [
        "en",
        get_language(target).code,
        *(extra if extra is not None else DEFAULT_DETECTOR_CODES),
    ]
    seen: dict[str, None] = {}
    for code in codes:
        code = get_language(code).code
        if lingua_language(code) is None:
            logger.debug("lingua cannot identify %s; left out of the detector", code)
            continue
        seen.setdefault(code, None)
    return tuple(seen)


@functools.lru_cache(maxsize=8)
def build_detector(codes: tuple[str, ...]) -> lingua.LanguageDetector:
    """A lingua detector restricted to `codes`, built once per set (its models load lazily)."""
    from lingua import LanguageDetectorBuilder

    members = [lingua_language(code) for code in codes]
    known = [m for m in members if m is not None]
    if len(known) < 2:
        raise LanguageCheckUnavailable(
            f"lingua needs at least two languages to choose among, got {list(codes)}"
        )
    return LanguageDetectorBuilder.from_languages(*known).build()


class LineLanguageChecker:
    """Checks responses line by line against an expected language (the LCB's LPR)."""

    def __init__(
        self, target: str, detector_codes: Sequence[str] | None = None, min_words: int = 5
    ) -> None:
        target_lang = get_language(target)
        if lingua_language(target_lang.code) is None:
            raise LanguageCheckUnavailable(
                f"lingua-language-detector cannot identify {target_lang.name} "
                f"({target_lang.code}), so the right-language rate cannot be measured for it"
            )
        self.codes = resolve_detector_codes(target_lang.code, detector_codes)
        self.min_words = min_words
        self._detector = build_detector(self.codes)

    def detect(self, text: str) -> str | None:
        """ISO 639-1 code of the text's language among the detector's set, or None."""
        found = self._detector.detect_language_of(text)
        return found.iso_code_639_1.name.lower() if found is not None else None

    def check(self, response: str, expected: str) -> ResponseVerdict:
        """Verdict for one response that should be in language `expected` (a code)."""
        expected_code = get_language(expected).code
        lines: list[LineVerdict] = []
        for raw in response.splitlines():
            text = raw.strip()
            if not text:
                continue
            words = count_words(text)
            if words < self.min_words:
                lines.append(LineVerdict(text, words, kept=False, language=None, ok=None))
                continue
            language = self.detect(text)
            lines.append(LineVerdict(text, words, True, language, language == expected_code))
        kept = [line for line in lines if line.kept]
        if not kept:
            verdict: Verdict = "no_kept_lines"
        else:
            verdict = "pass" if all(line.ok for line in kept) else "fail"
        return ResponseVerdict(verdict, tuple(lines))


@dataclass(frozen=True)
class PassRate:
    """Aggregate of many verdicts; rates are over responses that had a checked line."""

    total: int
    passed: int
    failed: int
    no_kept_lines: int
    answered_in_english: int

    @property
    def judged(self) -> int:
        return self.passed + self.failed

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.judged if self.judged else None

    @property
    def english_rate(self) -> float | None:
        return self.answered_in_english / self.judged if self.judged else None


def pass_rate(verdicts: Sequence[ResponseVerdict]) -> PassRate:
    """Count passes, fails, unchecked responses and fully English responses."""
    return PassRate(
        total=len(verdicts),
        passed=sum(v.verdict == "pass" for v in verdicts),
        failed=sum(v.verdict == "fail" for v in verdicts),
        no_kept_lines=sum(v.verdict == "no_kept_lines" for v in verdicts),
        answered_in_english=sum(v.entirely_in("en") for v in verdicts),
    )
