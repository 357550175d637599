"""Per-text checks on a translation: empty, repetition loop, length ratio, wrong language.

`QualityChecker.check(source, translation)` returns the first failing reason or None. The
language identifier (lingua, offline) is restricted to a fixed set of likely languages:
that is faster and more accurate than all 75, and an MT model's usual failure (copying the
English or drifting into a neighbouring major language) stays detectable.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING, Literal

from clo.languages import PAPER_LANGUAGES, lingua_language
from clo.translate.config import QualityConfig

if TYPE_CHECKING:
    import lingua

logger = logging.getLogger(__name__)

Reason = Literal["empty", "repetition", "length_ratio", "wrong_language"]
REASONS: tuple[Reason, ...] = ("empty", "repetition", "length_ratio", "wrong_language")

# Candidates besides the target: English, the paper's languages and other major languages
# an MT model may drift into.
_CANDIDATES = (*PAPER_LANGUAGES, "en", "fr", "es", "pt", "it", "nl", "ru", "ja", "ar", "hi")
_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?(?:^ {0,3}\1[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_NOT_PROSE = re.compile(r"(`+)(?:(?!\1).)+?\1|(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+\.\S+|\d+")
# CJK ideographs, kana and Hangul syllables are words of their own for repetition counting.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|[^\W\d_]+|\d+|[^\w\s]", re.UNICODE)
_CHAR_LOOP = re.compile(r"(.{1,10}?)\1{7,}", re.DOTALL)
_LANGID_MAX_CHARS = 2000


def prose_only(text: str) -> str:
    """The text without fenced code, inline code, URLs, e-mail addresses and numbers."""
    return " ".join(_NOT_PROSE.sub(" ", _FENCED.sub(" ", text)).split())


def letter_count(text: str) -> int:
    """Letters, a CJK/kana/Hangul character counting 3 (it carries about a Latin word's third)."""
    return sum((3 if ord(ch) >= 0x2E80 else 1) for ch in text if ch.isalpha())


def max_ngram_repeats(text: str, max_n: int = 6) -> int:
    """Most back-to-back repetitions of any 1..max_n-gram of tokens ("a b a b a b" -> 3)."""
    tokens = _TOKEN.findall(text.lower())
    best = 1 if tokens else 0
    for n in range(1, max_n + 1):
        run = 0
        for j in range(len(tokens) - n):
            run = run + 1 if tokens[j] == tokens[j + n] else 0
            best = max(best, 1 + run // n)
    return best


def max_char_repeats(text: str) -> int:
    """Most back-to-back repetitions of a 1..10 character unit, counted from 8 on, else 0."""
    best = 0
    for m in _CHAR_LOOP.finditer(text):
        best = max(best, len(m.group(0)) // len(m.group(1)))
    return best


@functools.lru_cache(maxsize=32)
def _detector(languages: frozenset[lingua.Language]) -> lingua.LanguageDetector:
    """One lingua detector per language set, built once: its models load lazily and stay."""
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*languages).build()


class QualityChecker:
    """Checks translations into one target language against their English sources."""

    def __init__(self, target: str, config: QualityConfig | None = None) -> None:
        self.config = config or QualityConfig()
        self.target = lingua_language(target)
        candidates = {lingua_language(code) for code in (*_CANDIDATES, target)}
        candidates.discard(None)
        self._languages = frozenset(candidates)
        if self.target is None:
            logger.warning(
                "lingua has no model for %r: translations are not language-checked", target
            )

    @property
    def language_id_available(self) -> bool:
        return self.target is not None

    def is_wrong_language(self, text: str) -> bool:
        if self.target is None:
            return False
        prose = prose_only(text)
        if letter_count(prose) < self.config.min_chars_for_language_id:
            return False  # too short to identify reliably
        detector = _detector(self._languages)
        sample = prose[:_LANGID_MAX_CHARS]
        if detector.detect_language_of(sample) != self.target:
            return True
        threshold = self.config.min_language_confidence
        if threshold <= 0:
            return False
        return detector.compute_language_confidence(sample, self.target) < threshold

    def is_repetition_loop(self, source: str, translation: str) -> bool:
        limit = self.config.max_ngram_repeats
        out_repeats = max_ngram_repeats(translation)
        if out_repeats >= limit and out_repeats > max_ngram_repeats(source):
            return True
        out_chars = max_char_repeats(translation)
        return out_chars > 0 and out_chars > max_char_repeats(source)

    def is_length_off(self, source: str, translation: str) -> bool:
        # UTF-8 bytes, not characters: a CJK character carries about as much as 3 Latin ones
        src, out = len(source.encode()), len(translation.encode())
        if src < self.config.min_bytes_for_length_ratio:
            return False
        ratio = out / src
        return not (self.config.min_length_ratio <= ratio <= self.config.max_length_ratio)

    def check(self, source: str, translation: str) -> Reason | None:
        """The first failing check, or None if the translation passes all of them."""
        if not translation.strip():
            return None if not source.strip() else "empty"
        if self.is_repetition_loop(source, translation):
            return "repetition"
        if self.is_length_off(source, translation):
            return "length_ratio"
        if self.is_wrong_language(translation):
            return "wrong_language"
        return None
