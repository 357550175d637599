"""The per-text quality checks, on hand-written translations (the tiny model's are random)."""

import pytest

from clo.translate.config import QualityConfig
from clo.translate.quality import (
    QualityChecker,
    max_char_repeats,
    max_ngram_repeats,
    prose_only,
)

SRC = "The weather is nice today, so we are going to the park with the children."
GOOD_DE = "Das Wetter ist heute schön, deshalb gehen wir mit den Kindern in den Park."


@pytest.fixture(scope="module")
def german() -> QualityChecker:
    return QualityChecker("de")


def test_good_translation_passes(german):
    assert german.check(SRC, GOOD_DE) is None


@pytest.mark.parametrize(
    ("translation", "reason"),
    [
        (SRC, "wrong_language"),  # the model copied the English
        (
            "Le temps est beau aujourd'hui, alors nous allons au parc avec les enfants.",
            "wrong_language",
        ),
        ("", "empty"),
        ("   \n ", "empty"),
        ("Das Wetter ist ist ist ist ist heute schön.", "repetition"),
        ("Das Wetter ist heute schön, " * 8, "repetition"),
        ("Das Wetter adiadiadiadiadiadiadiadiadi schön.", "repetition"),
        ("Das Wetter.", "length_ratio"),
        (
            GOOD_DE + " " + " ".join(f"Satz {i} über etwas anderes." for i in range(40)),
            "length_ratio",
        ),
    ],
)
def test_planted_bad_translations_fail(german, translation, reason):
    assert german.check(SRC, translation) == reason


def test_cjk_target_is_identified_and_not_length_flagged():
    chinese = QualityChecker("zh")
    assert chinese.check(SRC, "今天天气很好，所以我们和孩子们一起去公园。") is None
    assert chinese.check(SRC, GOOD_DE) == "wrong_language"


def test_yoruba_is_checked_offline():
    yoruba = QualityChecker("yo")
    src = "The weather is nice today, so we are going to the park."
    assert yoruba.check(src, "Ojú ọjọ́ dára lónìí, nítorí náà a ń lọ sí ọgbà ìtura.") is None
    assert yoruba.check(src, src) == "wrong_language"


def test_short_texts_and_code_are_not_language_checked(german):
    # too few letters to identify: an English-looking "OK" is no evidence of failure
    assert german.check("OK, thanks!", "OK, danke!") is None
    code_heavy_src = "Run this:\n```\nprint('hello world, this is code')\n```"
    code_heavy_out = "Führe das aus:\n```\nprint('hello world, this is code')\n```"
    assert german.check(code_heavy_src, code_heavy_out) is None
    assert "print" not in prose_only(code_heavy_out)


def test_repetition_already_in_the_source_is_not_a_loop(german):
    src = "He laughed: ha ha ha ha ha ha. Then the separator line ================ ended."
    out = "Er lachte: ha ha ha ha ha ha. Dann endete die Trennlinie ================."
    assert german.check(src, out) is None


def test_repetition_counters():
    assert max_ngram_repeats("a b a b a b c") == 3
    assert max_ngram_repeats("one two three") == 1
    assert max_ngram_repeats("好好好好好") == 5
    assert max_char_repeats("--------") == 8
    assert max_char_repeats("abcabc") == 0


def test_thresholds_are_configurable():
    strict = QualityChecker("de", QualityConfig(min_length_ratio=0.95, max_length_ratio=1.05))
    assert strict.check(SRC, GOOD_DE) is None  # about the same length
    assert strict.check(SRC, GOOD_DE + " Und wir essen danach ein großes Eis.") == "length_ratio"
    with pytest.raises(ValueError, match="min_length_ratio"):
        QualityConfig(min_length_ratio=2.0, max_length_ratio=1.0)


def test_language_without_lingua_model_skips_only_language_id():
    amharic = QualityChecker("am")
    assert not amharic.language_id_available
    assert amharic.check(SRC, SRC) is None  # cannot tell the language
    assert amharic.check(SRC, "") == "empty"  # degeneracy checks still run
