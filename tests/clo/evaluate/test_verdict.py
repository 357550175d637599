"""Answer verdicts (usable / empty / wrong_language / echo / loop) on answers written for tests."""

import pytest
from pydantic import ValidationError

from clo.evaluate.language_check import LineLanguageChecker
from clo.evaluate.verdict import (
    REASON_ORDER,
    VERDICT_VERSION,
    VerdictChecker,
    VerdictConfig,
    summarize,
    word_tokens,
)

SKY = {
    "de": "Erkläre, warum der Himmel blau ist.",
    "sw": "Eleza kwa nini anga ni la buluu.",
    "zh": "请解释为什么天空是蓝色的。",
    "ko": "하늘이 왜 파란색인지 설명해 주세요.",
    "fr": "Explique pourquoi le ciel est bleu.",
    "es": "Explica por qué el cielo es azul.",
    "yo": "Ṣàlàyé ìdí tí ojú ọ̀run fi jẹ́ búlúù.",
    "en": "Explain why the sky is blue.",
}
REAL = {
    "de": "Der Himmel ist blau, weil das Sonnenlicht an den winzigen Molekülen der Luft gestreut "
    "wird.\nBlaues Licht hat eine kürzere Wellenlänge und wird daher stärker gestreut.",
    "sw": "Anga ni la buluu kwa sababu mwanga wa jua hutawanywa na molekuli ndogo za hewa. "
    "Mwanga wa buluu una urefu mfupi wa wimbi.",
    "zh": "天空是蓝色的，因为阳光在穿过大气层时被空气中的微小分子散射，"
    "蓝光的波长较短，所以散射得更多。",
    "ko": "하늘이 파란 이유는 햇빛이 대기 중의 작은 분자들에 의해 산란되기 때문입니다. "
    "파란빛은 파장이 짧아서 더 많이 산란됩니다.",
    "fr": "Le ciel est bleu parce que la lumière du soleil est diffusée par les petites "
    "molécules de l'air.",
    "es": "El cielo es azul porque la luz del sol se dispersa en las pequeñas moléculas del aire.",
    "yo": "Ojú ọ̀run jẹ́ búlúù nítorí pé ìmọ́lẹ̀ oòrùn máa ń tàn ká nínú afẹ́fẹ́, "
    "ìmọ́lẹ̀ búlúù sì máa ń tàn ká jù.",
    "en": "The sky is blue because sunlight is scattered by the tiny molecules in the air, "
    "and blue light scatters the most.",
}
ENGLISH_QUOTING_GERMAN = (
    'This is a German phrase that translates to "Beschreibe einen typischen Tag in deinem Leben".'
)


@pytest.fixture(scope="module")
def checkers() -> dict[str, VerdictChecker]:
    return {code: VerdictChecker(code) for code in SKY if code != "en"}


@pytest.mark.parametrize("code", list(REAL))
def test_real_answers_are_usable(checkers, code):
    checker = checkers["de" if code == "en" else code]
    v = checker.verdict(SKY[code], REAL[code], code)
    assert (v.usable, v.reasons, v.language) == (True, (), code), v
    assert v.primary_reason is None


@pytest.mark.parametrize("answer", ["", "   \n\t ", "!!! ... ???\n---"])
def test_empty_answers(checkers, answer):
    v = checkers["de"].verdict(SKY["de"], answer, "de")
    assert (v.usable, v.reasons, v.tokens) == (False, ("empty",), 0)


@pytest.mark.parametrize("code", ["sw", "ko", "zh"])
def test_english_answer_to_a_target_prompt_is_wrong_language(checkers, code):
    v = checkers[code].verdict(SKY[code], REAL["en"], code)
    assert (v.usable, v.reasons, v.language) == (False, ("wrong_language",), "en")
    assert v.language_share == 0.0


def test_english_prose_quoting_german_is_english(checkers):
    prompt = "Beschreibe einen typischen Tag in deinem Leben."
    # the line-level check alone takes the line for German (most of its letters are)
    assert LineLanguageChecker("de").check(ENGLISH_QUOTING_GERMAN, "de").verdict == "pass"
    v = checkers["de"].verdict(prompt, ENGLISH_QUOTING_GERMAN, "de")
    assert v.language == "en"
    assert "wrong_language" in v.reasons and v.usable is False


def test_german_prose_quoting_english_is_german(checkers):
    answer = 'Das ist ein englischer Satz: "The quick brown fox jumps over the lazy dog every day"'
    v = checkers["de"].verdict("Was bedeutet dieser Satz?", answer, "de")
    assert (v.usable, v.reasons, v.language) == (True, (), "de"), v


def test_a_foreign_line_fails_unless_the_share_allows_it(checkers):
    answer = (
        "Der Himmel ist blau, weil das Sonnenlicht in der Luft gestreut wird.\n"
        "The blue light has a shorter wavelength, so it is scattered much more strongly."
    )
    v = checkers["de"].verdict(SKY["de"], answer, "de")
    assert v.reasons == ("wrong_language",)
    assert 0.3 < v.language_share < 0.7
    lenient = VerdictChecker("de", VerdictConfig(language_share=0.3))
    assert lenient.verdict(SKY["de"], answer, "de").usable is True


@pytest.mark.parametrize(
    ("code", "answer"),
    [
        ("de", 'Erkläre: "Erkläre, warum der Himmel blau ist."'),
        ("sw", "Eleza kwa nini anga ni la buluu? Kwa nini anga ni la buluu?"),
        ("zh", "请解释为什么天空是蓝色的。为什么天空是蓝色的？"),
        ("ko", "하늘이 왜 파란색인지 설명해 주세요. 왜 파란색인지 설명해 주세요."),
        ("fr", "Explique pourquoi le ciel est bleu : pourquoi le ciel est bleu."),
    ],
)
def test_echoes_of_the_prompt(checkers, code, answer):
    v = checkers[code].verdict(SKY[code], answer, code)
    assert (v.usable, v.reasons, v.language) == (False, ("echo",), code), v


def test_copied_prompt_with_a_few_new_words_is_an_echo_by_copied_runs(checkers):
    prompt = "Nenne drei Vorteile des Radfahrens in der Stadt für die Gesundheit."
    answer = (
        "Nenne drei Vorteile des Radfahrens in der Stadt für die Gesundheit und warum, sagt Oma."
    )
    v = checkers["de"].verdict(prompt, answer, "de")
    assert v.prompt_token_share < VerdictConfig().echo_token_share  # the token share alone misses
    assert v.copied_share >= VerdictConfig().echo_copied_share
    assert v.reasons == ("echo",)


def test_prompt_words_reshuffled_are_an_echo_by_token_share(checkers):
    v = checkers["de"].verdict(SKY["de"], "Der Himmel ist blau, warum? Erkläre!", "de")
    assert v.copied_share == 0.0  # no run of four tokens is copied
    assert v.prompt_token_share == 1.0
    assert v.reasons == ("echo",)


def test_one_word_answer_taken_from_the_prompt_is_not_an_echo(checkers):
    v = checkers["de"].verdict(
        "Ist Berlin oder Paris die Hauptstadt von Deutschland?", "Berlin.", "de"
    )
    assert v.prompt_token_share == 1.0
    assert "echo" not in v.reasons


def test_short_period_loop(checkers):
    v = checkers["de"].verdict(SKY["de"], "Das ist sehr gut. " * 6, "de")
    assert (v.usable, v.reasons) == (False, ("loop",)), v
    assert v.top_ngram_share >= VerdictConfig().loop_top_share


def test_answer_ending_in_a_stutter_is_a_loop_by_the_top_ngram(checkers):
    answer = (
        "Das Licht der Sonne wird in der Atmosphäre gestreut, besonders stark im kurzwelligen "
        "Bereich, ja ja ja ja ja ja ja ja ja ja"
    )
    v = checkers["de"].verdict(SKY["de"], answer, "de")
    assert v.distinct_ngram_ratio is not None
    assert v.distinct_ngram_ratio > VerdictConfig().loop_max_distinct  # distinct n-grams miss it
    assert v.top_ngram_share >= VerdictConfig().loop_top_share
    assert v.reasons == ("loop",)


def test_long_period_loop_is_caught_by_distinct_ngrams(checkers):
    sentence = "Die Sonne scheint heute hell und die Kinder spielen draußen im grünen Garten. "
    v = checkers["de"].verdict(SKY["de"], sentence * 3, "de")
    assert v.top_ngram_share < VerdictConfig().loop_top_share  # no single n-gram dominates
    assert v.distinct_ngram_ratio is not None
    assert v.distinct_ngram_ratio <= VerdictConfig().loop_max_distinct
    assert (v.usable, v.reasons) == (False, ("loop",))


def test_short_emphatic_answer_is_not_a_loop(checkers):
    v = checkers["de"].verdict("Ist die Erde flach?", "Nein, nein, nein, nein.", "de")
    assert v.distinct_ngram_ratio == 0.5  # would count as a loop in a longer answer
    assert "loop" not in v.reasons


def test_chinese_character_loop(checkers):
    v = checkers["zh"].verdict(SKY["zh"], "天空" * 12, "zh")
    assert v.reasons == ("loop",)


def test_several_reasons_and_the_primary_one(checkers):
    echo_loop = checkers["de"].verdict(SKY["de"], "Der Himmel, der Himmel, " * 4, "de")
    assert echo_loop.reasons == ("echo", "loop") and echo_loop.primary_reason == "echo"
    english_loop = checkers["sw"].verdict(SKY["sw"], "The sky is blue, " * 6, "sw")
    assert english_loop.reasons == ("wrong_language", "loop")
    assert english_loop.primary_reason == "wrong_language"
    assert REASON_ORDER == ("empty", "wrong_language", "echo", "loop")


def test_language_lingua_lacks_is_unknown_not_a_crash():
    checker = VerdictChecker("am")
    real = checker.verdict(
        "ሰማዩ ለምን ሰማያዊ እንደሆነ አብራራ።",
        "ሰማዩ ሰማያዊ የሆነው የፀሐይ ብርሃን በአየር ውስጥ ባሉ ትናንሽ ሞለኪውሎች ስለሚበተን ነው።",
        "am",
    )
    assert (real.usable, real.reasons, real.language, real.language_share) == (None, (), None, None)
    looped = checker.verdict("ሰማዩ ለምን ሰማያዊ ነው?", "ሰማያዊ ብርሃን ነው። " * 6, "am")
    assert (looped.usable, looped.reasons) == (False, ("loop",))


def test_thresholds_are_configurable(checkers):
    lax = VerdictChecker("de", VerdictConfig(echo_token_share=1.0, echo_copied_share=1.0))
    echo = 'Erkläre: "Erkläre, warum der Himmel blau ist."'
    assert checkers["de"].verdict(SKY["de"], echo, "de").reasons == ("echo",)
    assert lax.verdict(SKY["de"], echo, "de").reasons == ("echo",)  # every token is copied
    laxer = VerdictChecker("de", VerdictConfig(echo_min_tokens=50))
    assert laxer.verdict(SKY["de"], echo, "de").usable is True


def test_config_is_typed_frozen_and_strict():
    config = VerdictConfig()
    assert config.echo_token_share == 0.8 and config.loop_ngram == 3
    with pytest.raises(ValidationError):
        VerdictConfig(echo_token_share=1.5)
    with pytest.raises(ValidationError):
        VerdictConfig(unknown=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        config.loop_ngram = 4  # type: ignore[misc]
    assert all(field.description for field in VerdictConfig.model_fields.values())
    assert isinstance(VERDICT_VERSION, str) and VERDICT_VERSION


def test_summary_counts(checkers):
    c = checkers["de"]
    verdicts = [
        c.verdict(SKY["de"], REAL["de"], "de"),
        c.verdict(SKY["de"], "", "de"),
        c.verdict(SKY["de"], "Der Himmel, der Himmel, " * 4, "de"),
        c.verdict(SKY["de"], REAL["en"], "de"),
    ]
    s = summarize(verdicts)
    assert (s.total, s.usable, s.undecided, s.decided) == (4, 1, 0, 4)
    assert s.usable_rate == 0.25
    assert s.reasons == {"empty": 1, "wrong_language": 1, "echo": 1, "loop": 1}
    assert s.primary_reasons == {"empty": 1, "wrong_language": 1, "echo": 1, "loop": 0}
    assert summarize([]).usable_rate is None


def test_word_tokens():
    assert word_tokens("Der Himmel, der HIMMEL!") == ["der", "himmel", "der", "himmel"]
    assert word_tokens("l'air 42") == ["l", "air", "42"]
    assert word_tokens("天空是蓝色") == ["天空", "空是", "是蓝", "蓝色"]
    assert word_tokens("天 sky") == ["天", "sky"]
    # decomposed Yoruba tone marks stay inside their word
    assert word_tokens("o\u0323\u0300run jẹ́") == ["ọ̀run", "jẹ́"]
