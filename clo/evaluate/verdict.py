"""A verdict per generated answer: is it a usable answer in the expected language?

The line-level pass rate (language_check) only asks which language an answer's lines are in,
so echoes of the prompt, repetition loops and English prose quoting target-language words
all pass it. An answer is `usable` only when none of these failure reasons applies:

- `empty`: no letters or digits at all.
- `wrong_language`: its checked lines (at least `min_words` words, as in the LCB) are not in
  the expected language. A line counts as the language of its prose: text inside quotation
  marks is set aside when enough words remain outside it, and of what is left lingua's
  segments (`detect_multiple_languages_of`) vote by letters. An answer with no line long
  enough is identified as a whole.
- `echo`: most of its word tokens occur in the prompt, or most of it is runs copied from it.
- `loop`: one word n-gram covers much of it, or few of its n-grams are distinct.

Word tokens are lower-cased runs of letters, marks and digits; in scripts written without
spaces (Han, kana, Thai, ...) overlapping character pairs stand in for words.
For a language lingua cannot identify the language is reported unknown: such an answer is
never `wrong_language`, and with no other reason its `usable` is None (undecided).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby, pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from clo.evaluate.language_check import (
    build_detector,
    count_words,
    is_unspaced_char,
    resolve_detector_codes,
)
from clo.languages import get_language, lingua_language

# Changes whenever a rule or a default below changes: cached verdicts are keyed on it.
VERDICT_VERSION = "1"

Reason = Literal["empty", "wrong_language", "echo", "loop"]
# Primary reason = the first that applies: nothing to read, then the symptom CLO fixes,
# then copying the prompt, then looping.
REASON_ORDER: tuple[Reason, ...] = ("empty", "wrong_language", "echo", "loop")

# Quoted spans set aside before identifying a line's prose. ASCII single quotes only when
# they do not touch a letter on the outside, so apostrophes (don't, l'air) stay.
_QUOTED = re.compile(
    r'"[^"\n]*"|“[^”\n]*”|„[^“”\n]*[“”]|«[^»\n]*»|»[^«\n]*«|‹[^›\n]*›|「[^」\n]*」'
    r"|『[^』\n]*』|‚[^‘’\n]*[‘’]|‘[^’\n]*’|(?<!\w)'[^'\n]+'(?!\w)|`[^`\n]*`"
)


class VerdictConfig(BaseModel):
    """Thresholds of the answer verdict; stored in every report with VERDICT_VERSION."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_prose_words: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Words a line needs outside quotation marks to be identified by that prose "
        "alone; with fewer, the whole line (quotes included) is identified.",
    )
    language_share: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Share of the checked lines' letters that must be in the expected language; "
        "1.0: every checked line, as in the LCB pass rate.",
    )
    echo_token_share: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Echo when at least this share of the answer's word tokens occur in the "
        "prompt.",
    )
    echo_ngram: int = Field(
        default=4, ge=2, le=20, description="Length of the token runs counted as copied."
    )
    echo_copied_share: float = Field(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="Echo when at least this share of the answer's tokens lie in runs of "
        "`echo_ngram` tokens that also occur in the prompt.",
    )
    echo_min_tokens: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Shorter answers are never echoes (a one-word answer may rightly come from "
        "the prompt).",
    )
    loop_ngram: int = Field(default=3, ge=1, le=20, description="n of the n-grams a loop repeats.")
    loop_top_share: float = Field(
        default=0.4,
        gt=0.0,
        le=1.0,
        description="Loop when the occurrences of the most frequent n-gram cover at least this "
        "share of the answer's tokens (short-period loops).",
    )
    loop_max_distinct: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Loop when distinct n-grams / n-grams is at most this (long-period loops; "
        "natural text is near 1).",
    )
    loop_min_repeats: int = Field(
        default=3,
        ge=2,
        le=100,
        description="Times the most frequent n-gram must occur for `loop_top_share` to apply "
        "(a phrase said twice is not yet a loop).",
    )
    loop_min_tokens: int = Field(
        default=8, ge=2, le=1000, description="Shorter answers are never loops."
    )


@dataclass(frozen=True)
class AnswerVerdict:
    """The verdict on one answer and the measurements behind it."""

    usable: bool | None  # None: no failure found, but the language could not be identified
    reasons: tuple[Reason, ...]  # in REASON_ORDER
    language: str | None  # code with the most letters in the checked lines; None: unknown
    language_share: float | None  # share of checked letters in the expected language
    tokens: int
    prompt_token_share: float  # share of answer tokens that occur in the prompt
    copied_share: float  # share of answer tokens in runs copied from the prompt
    top_ngram_share: float  # tokens covered by the most frequent n-gram
    distinct_ngram_ratio: float | None  # None: fewer tokens than n

    @property
    def primary_reason(self) -> Reason | None:
        return self.reasons[0] if self.reasons else None


def _char_kind(ch: str) -> Literal["spaced", "unspaced", "separator"]:
    if unicodedata.category(ch)[0] not in "LMN":  # letters, marks (Yoruba tones), digits
        return "separator"
    return "unspaced" if is_unspaced_char(ch) else "spaced"


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens; character pairs in scripts written without spaces."""
    tokens: list[str] = []
    for kind, group in groupby(unicodedata.normalize("NFC", text).lower(), key=_char_kind):
        chars = list(group)
        if kind == "spaced":
            tokens.append("".join(chars))
        elif kind == "unspaced":
            tokens.extend([chars[0]] if len(chars) == 1 else map("".join, pairwise(chars)))
    return tokens


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def copied_shares(answer: Sequence[str], prompt: Sequence[str], n: int) -> tuple[float, float]:
    """(share of answer tokens found in the prompt, share inside n-token runs copied from it)."""
    if not answer:
        return 0.0, 0.0
    vocab = set(prompt)
    in_prompt = sum(t in vocab for t in answer) / len(answer)
    prompt_grams = set(_ngrams(prompt, n))
    covered = [False] * len(answer)
    for i, gram in enumerate(_ngrams(answer, n)):
        if gram in prompt_grams:
            covered[i : i + n] = [True] * n
    return in_prompt, sum(covered) / len(answer)


def repetition(tokens: Sequence[str], n: int, min_repeats: int = 2) -> tuple[float, float | None]:
    """(share of tokens covered by the most frequent n-gram if it occurs `min_repeats` times
    or more, else 0; distinct n-grams / n-grams, None when there are none)."""
    grams = _ngrams(tokens, n)
    if not grams:
        return 0.0, None
    top, count = Counter(grams).most_common(1)[0]
    covered = [False] * len(tokens)
    if count >= max(min_repeats, 2):
        for i, gram in enumerate(grams):
            if gram == top:
                covered[i : i + n] = [True] * n
    return sum(covered) / len(tokens), len(set(grams)) / len(grams)


def _letters(text: str) -> int:
    return sum(ch.isalpha() for ch in text)


class VerdictChecker:
    """Gives answers their verdicts; one per target language (it holds the lingua detector)."""

    def __init__(
        self,
        target: str,
        config: VerdictConfig | None = None,
        detector_codes: Sequence[str] | None = None,
        min_words: int = 5,
    ) -> None:
        self.config = config or VerdictConfig()
        self.min_words = min_words
        self.codes = resolve_detector_codes(get_language(target).code, detector_codes)
        self._detector = build_detector(self.codes)

    def segment_letters(self, text: str) -> Counter[str]:
        """Letters per language code in lingua's segmentation of `text`."""
        votes: Counter[str] = Counter()
        for part in self._detector.detect_multiple_languages_of(text):
            code = part.language.iso_code_639_1.name.lower()
            votes[code] += _letters(text[part.start_index : part.end_index])
        if not votes:  # lingua found no segment: fall back to one guess for the whole text
            found = self._detector.detect_language_of(text)
            if found is not None:
                votes[found.iso_code_639_1.name.lower()] = _letters(text)
        return votes

    def line_language(self, line: str) -> str | None:
        """The language of most of a line's prose letters (quotes set aside when prose remains)."""
        prose = _QUOTED.sub(" ", line)
        segment = prose if count_words(prose) >= self.config.min_prose_words else line
        votes = self.segment_letters(segment)
        return votes.most_common(1)[0][0] if votes else None

    def answer_languages(self, answer: str) -> Counter[str]:
        """Letters of the checked lines per line language (whole answer if no line is long)."""
        lines = [ln.strip() for ln in answer.splitlines() if ln.strip()]
        checked = [ln for ln in lines if count_words(ln) >= self.min_words]
        votes: Counter[str] = Counter()
        for line in checked or [" ".join(lines)]:
            language = self.line_language(line)
            # an undecided line weighs against the expected language, as in the LCB
            votes[language or ""] += max(_letters(line), 1)
        return votes

    def verdict(self, prompt: str, answer: str, expected: str) -> AnswerVerdict:
        """The verdict on `answer` to `prompt`, which should be in language `expected` (code)."""
        cfg = self.config
        expected_code = get_language(expected).code
        tokens = word_tokens(answer)
        reasons: set[Reason] = set()
        language: str | None = None
        share: float | None = None
        known = lingua_language(expected_code) is not None and expected_code in self.codes
        if not tokens:
            reasons.add("empty")
        elif known:
            votes = self.answer_languages(answer)
            total = sum(votes.values())
            if total:
                language = votes.most_common(1)[0][0] or None
                share = votes[expected_code] / total
            if share is None or share < cfg.language_share:
                reasons.add("wrong_language")
        in_prompt, copied = copied_shares(tokens, word_tokens(prompt), cfg.echo_ngram)
        if len(tokens) >= cfg.echo_min_tokens and (
            in_prompt >= cfg.echo_token_share or copied >= cfg.echo_copied_share
        ):
            reasons.add("echo")
        top, distinct = repetition(tokens, cfg.loop_ngram, cfg.loop_min_repeats)
        if len(tokens) >= cfg.loop_min_tokens and (
            top >= cfg.loop_top_share
            or (distinct is not None and distinct <= cfg.loop_max_distinct)
        ):
            reasons.add("loop")
        ordered = tuple(r for r in REASON_ORDER if r in reasons)
        usable = False if ordered else (True if known else None)
        return AnswerVerdict(
            usable=usable,
            reasons=ordered,
            language=language,
            language_share=share,
            tokens=len(tokens),
            prompt_token_share=in_prompt,
            copied_share=copied,
            top_ngram_share=top,
            distinct_ngram_ratio=distinct,
        )


@dataclass(frozen=True)
class VerdictSummary:
    """Counts over many verdicts; the usable rate is over answers whose verdict is decided."""

    total: int
    usable: int
    undecided: int
    reasons: dict[Reason, int]  # every reason an answer had (an answer can count several times)
    primary_reasons: dict[Reason, int]  # one per failed answer: its primary reason

    @property
    def decided(self) -> int:
        return self.total - self.undecided

    @property
    def usable_rate(self) -> float | None:
        return self.usable / self.decided if self.decided else None


def summarize(verdicts: Sequence[AnswerVerdict]) -> VerdictSummary:
    """Usable, undecided and per-reason counts (every reason listed, zeros included)."""
    return VerdictSummary(
        total=len(verdicts),
        usable=sum(v.usable is True for v in verdicts),
        undecided=sum(v.usable is None for v in verdicts),
        reasons={r: sum(r in v.reasons for v in verdicts) for r in REASON_ORDER},
        primary_reasons={r: sum(v.primary_reason == r for v in verdicts) for r in REASON_ORDER},
    )
