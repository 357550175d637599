"""The shipped evaluation prompt sets: aligned across languages, disjoint from the seed data,
in the language their file names, and loadable and hashable through clo.evaluate.prompt_sets.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections import Counter

import pytest

from clo.errors import CloError
from clo.evaluate.language_check import LineLanguageChecker, count_words
from clo.evaluate.prompt_sets import (
    CATEGORIES,
    EvalPrompt,
    eval_prompt_languages,
    eval_prompt_set_hash,
    load_eval_prompts,
)
from clo.seed import builtin_parallel, builtin_parallel_languages, builtin_seed

SET_LANGS = ("en", "de", "sw")
MIN_PROMPTS = 100
MIN_PER_CATEGORY = 15
NEAR_DUPLICATE_JACCARD = 0.8
MAX_SHORT_MISDETECTION_RATE = 0.02
LONG_PROMPT_WORDS = 8


def normalise(text: str) -> str:
    """Case-folded text without punctuation or symbols, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S")))
    return " ".join(kept.split())


def word_set(text: str) -> frozenset[str]:
    return frozenset(normalise(text).split())


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def seed_prompts_by_language() -> dict[str, set[str]]:
    """Every shipped seed/parallel prompt, by the language it is written in."""
    by_lang: dict[str, set[str]] = {"en": {e.prompt for e in builtin_seed()}}
    for code in builtin_parallel_languages():
        for quad in builtin_parallel(code):
            by_lang["en"].add(quad.x_en)
            by_lang.setdefault(code, set()).add(quad.x_tgt)
    return by_lang


def exact_overlaps(prompts: list[EvalPrompt], seed: set[str]) -> list[str]:
    normalised_seed = {normalise(s) for s in seed}
    return [f"{p.id}: {p.prompt}" for p in prompts if normalise(p.prompt) in normalised_seed]


def near_duplicates(prompts: list[EvalPrompt], seed: set[str]) -> list[str]:
    seed_words = [(s, word_set(s)) for s in seed]
    found = []
    for p in prompts:
        words = word_set(p.prompt)
        for s, s_words in seed_words:
            score = jaccard(words, s_words)
            if score >= NEAR_DUPLICATE_JACCARD:
                found.append(f"{p.id}: {p.prompt!r} ~ {s!r} (jaccard {score:.2f})")
    return found


@pytest.fixture(scope="module")
def sets() -> dict[str, list[EvalPrompt]]:
    return {code: load_eval_prompts(code) for code in SET_LANGS}


@pytest.fixture(scope="module")
def seed_by_lang() -> dict[str, set[str]]:
    return seed_prompts_by_language()


# ---- (a) size and alignment -------------------------------------------------------------


def test_sets_ship_for_en_de_sw() -> None:
    assert set(SET_LANGS) <= set(eval_prompt_languages())
    # the multiple-choice fixtures (eval_belebele_*, eval_mmmlu_*) are not prompt sets
    for code in eval_prompt_languages():
        assert load_eval_prompts(code)


@pytest.mark.parametrize("code", SET_LANGS)
def test_each_set_is_large_enough_and_well_formed(
    sets: dict[str, list[EvalPrompt]], code: str
) -> None:
    prompts = sets[code]
    assert len(prompts) >= MIN_PROMPTS
    assert len({p.id for p in prompts}) == len(prompts), "duplicate ids"
    assert len({normalise(p.prompt) for p in prompts}) == len(prompts), "duplicate prompts"
    counts = Counter(p.category for p in prompts)
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= MIN_PER_CATEGORY, counts
    bad_length = [p.id for p in prompts if not 5 <= len(p.prompt.split()) <= 30]
    assert not bad_length, f"prompts outside 5-30 words: {bad_length}"


def test_ids_and_categories_aligned_across_languages(sets: dict[str, list[EvalPrompt]]) -> None:
    reference = sets["en"]
    ids = [p.id for p in reference]
    assert ids == [f"e{i:03d}" for i in range(1, len(ids) + 1)]
    for code in SET_LANGS[1:]:
        assert [p.id for p in sets[code]] == ids, f"{code} ids differ from en"
        assert [p.category for p in sets[code]] == [p.category for p in reference], code
        same_text = [
            p.id for p, q in zip(reference, sets[code], strict=True) if p.prompt == q.prompt
        ]
        assert not same_text, f"{code} prompts identical to English (untranslated): {same_text}"


# ---- (b) disjoint from every shipped seed set ---------------------------------------------


def test_overlap_checks_catch_copies() -> None:
    """The checks below can fail: a lightly edited seed prompt is caught by both."""
    seed = {"How do I make a good cup of tea?"}
    copy = EvalPrompt("e900", "how-to", "how do I make a GOOD cup of tea")
    edited = EvalPrompt("e901", "how-to", "How do I make a good cup of green tea?")
    other = EvalPrompt("e902", "how-to", "How do I sharpen a pencil without a sharpener?")
    assert exact_overlaps([copy, edited, other], seed) == [f"e900: {copy.prompt}"]
    assert [line[:4] for line in near_duplicates([copy, edited, other], seed)] == ["e900", "e901"]


def test_seed_data_is_loaded(seed_by_lang: dict[str, set[str]]) -> None:
    assert len(seed_by_lang["en"]) >= 200
    assert "de" in seed_by_lang and len(seed_by_lang["de"]) >= 100


@pytest.mark.parametrize("code", SET_LANGS)
def test_no_eval_prompt_appears_in_any_seed_set(
    sets: dict[str, list[EvalPrompt]], seed_by_lang: dict[str, set[str]], code: str
) -> None:
    every_seed_prompt = set().union(*seed_by_lang.values())
    assert not exact_overlaps(sets[code], every_seed_prompt)


@pytest.mark.parametrize("code", SET_LANGS)
def test_no_near_duplicate_of_same_language_seed(
    sets: dict[str, list[EvalPrompt]], seed_by_lang: dict[str, set[str]], code: str
) -> None:
    found = near_duplicates(sets[code], seed_by_lang.get(code, set()))
    assert not found, "\n".join(found)


# ---- (c) each prompt is in its file's language ----------------------------------------------


@pytest.mark.parametrize("code", SET_LANGS)
def test_prompts_are_in_the_file_language(sets: dict[str, list[EvalPrompt]], code: str) -> None:
    checker = LineLanguageChecker(code)
    prompts = sets[code]
    wrong = [(p, checker.detect(p.prompt)) for p in prompts]
    wrong = [(p, found) for p, found in wrong if found != code]
    long_wrong = [
        f"{p.id} ({found}): {p.prompt}"
        for p, found in wrong
        if count_words(p.prompt) >= LONG_PROMPT_WORDS
    ]
    assert not long_wrong, "\n".join(long_wrong)
    allowed = int(MAX_SHORT_MISDETECTION_RATE * len(prompts))
    assert len(wrong) <= allowed, "\n".join(f"{p.id} ({f}): {p.prompt}" for p, f in wrong)


# ---- (d) unknown languages ----------------------------------------------------------------


@pytest.mark.parametrize("code", ["fr", "yo", "xx-not-a-language"])
def test_language_without_a_set_names_the_available_sets(code: str) -> None:
    with pytest.raises(CloError) as excinfo:
        load_eval_prompts(code)
    message = str(excinfo.value)
    for available in SET_LANGS:
        assert available in message.split("ship for:")[-1], message


def test_language_names_resolve_through_the_registry() -> None:
    assert load_eval_prompts("DE") == load_eval_prompts("de")


# ---- (e) the set hash -----------------------------------------------------------------------


def test_hash_is_stable_and_changes_with_any_prompt(sets: dict[str, list[EvalPrompt]]) -> None:
    prompts = sets["en"]
    digest = eval_prompt_set_hash(prompts)
    assert len(digest) == 64
    assert eval_prompt_set_hash(load_eval_prompts("en")) == digest
    edited = list(prompts)
    edited[7] = dataclasses.replace(edited[7], prompt=edited[7].prompt + " ")
    assert eval_prompt_set_hash(edited) != digest
    recategorised = list(prompts)
    recategorised[0] = dataclasses.replace(recategorised[0], category="facts")
    assert eval_prompt_set_hash(recategorised) != digest
    assert eval_prompt_set_hash(list(reversed(prompts))) != digest
    assert eval_prompt_set_hash(prompts[:-1]) != digest
    assert len({eval_prompt_set_hash(sets[c]) for c in SET_LANGS}) == len(SET_LANGS)
