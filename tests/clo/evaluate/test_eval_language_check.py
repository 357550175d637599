"""Line-level language pass rate (LCB LPR) on texts written for these tests."""

import pytest

from clo.evaluate.language_check import (
    LanguageCheckUnavailable,
    LineLanguageChecker,
    count_words,
    pass_rate,
)

# Two full lines per language, each well over five words.
TEXTS = {
    "en": "The weather was lovely this morning, so we walked to the market.\n"
    "We bought fresh bread, some apples and a bunch of flowers for the table.",
    "de": "Das Wetter war heute Morgen herrlich, also sind wir zum Markt gelaufen.\n"
    "Wir haben frisches Brot, ein paar Äpfel und einen Blumenstrauß gekauft.",
    "zh": "今天早上天气很好，所以我们步行去了市场。\n我们买了新鲜的面包、一些苹果和一束鲜花。",
    "ko": "오늘 아침 날씨가 정말 좋아서 우리는 시장까지 걸어갔습니다.\n"
    "우리는 신선한 빵과 사과 몇 개, 그리고 꽃 한 다발을 샀습니다.",
    "id": "Cuaca pagi ini sangat cerah, jadi kami berjalan kaki ke pasar.\n"
    "Kami membeli roti segar, beberapa buah apel, dan seikat bunga untuk meja.",
    "sw": "Hali ya hewa ilikuwa nzuri sana asubuhi hii, kwa hiyo tulitembea hadi sokoni.\n"
    "Tulinunua mkate mpya, matunda machache na shada la maua kwa ajili ya meza.",
    "yo": "Ojú ọjọ́ dára gan-an ní òwúrọ̀ yìí, nítorí náà a rìn lọ sí ọjà.\n"
    "A ra búrẹ́dì tuntun, àwọn èso ápù díẹ̀ àti ìdìpọ̀ òdòdó fún tábìlì.",
}


@pytest.fixture(scope="module")
def checkers() -> dict[str, LineLanguageChecker]:
    return {code: LineLanguageChecker(code) for code in TEXTS if code != "en"}


@pytest.mark.parametrize("code", [c for c in TEXTS if c != "en"])
def test_each_language_passes_as_itself_and_fails_as_english(checkers, code):
    checker = checkers[code]
    own = checker.check(TEXTS[code], code)
    assert own.verdict == "pass", own.lines
    assert [line.language for line in own.lines] == [code, code]
    assert checker.check(TEXTS[code], "en").verdict == "fail"
    english = checker.check(TEXTS["en"], "en")
    assert english.verdict == "pass"
    assert checker.check(TEXTS["en"], code).verdict == "fail"
    assert checker.check(TEXTS["en"], code).entirely_in("en")


def test_mixed_language_answer_fails_on_the_foreign_line(checkers):
    mixed = TEXTS["de"].splitlines()[0] + "\n" + TEXTS["en"].splitlines()[1]
    result = checkers["de"].check(mixed, "de")
    assert result.verdict == "fail"
    assert [(line.language, line.ok) for line in result.lines] == [("de", True), ("en", False)]
    assert not result.entirely_in("en")  # mixed, not "answered in English"


def test_short_lines_are_skipped_not_judged(checkers):
    answer = "Okay, here you go:\n- 1.\n" + TEXTS["sw"] + "\nThanks!"
    result = checkers["sw"].check(answer, "sw")
    assert result.verdict == "pass"
    skipped = [line.text for line in result.lines if not line.kept]
    assert skipped == ["Okay, here you go:", "- 1.", "Thanks!"]
    assert all(line.language is None and line.ok is None for line in result.lines if not line.kept)


def test_answer_without_checkable_lines_is_left_out_of_the_rate(checkers):
    checker = checkers["id"]
    verdicts = [
        checker.check(TEXTS["id"], "id"),  # pass
        checker.check(TEXTS["en"], "id"),  # fail, fully English
        checker.check("Ya.\nTerima kasih!", "id"),  # nothing long enough
        checker.check("", "id"),  # empty
    ]
    assert [v.verdict for v in verdicts] == ["pass", "fail", "no_kept_lines", "no_kept_lines"]
    rate = pass_rate(verdicts)
    assert (rate.total, rate.judged, rate.passed, rate.no_kept_lines) == (4, 2, 1, 2)
    assert rate.pass_rate == 0.5
    assert rate.english_rate == 0.5
    assert pass_rate([verdicts[2]]).pass_rate is None


def test_min_words_is_configurable():
    strict = LineLanguageChecker("de", min_words=50)
    assert strict.check(TEXTS["de"], "de").verdict == "no_kept_lines"


def test_word_count_rule_for_scripts_without_spaces():
    assert count_words("我们买了新鲜的面包") == 5  # 9 Han characters -> ceil(9 / 2)
    assert count_words("我们买了") == 2
    assert count_words("1. - 42 ... Hello world") == 2  # tokens without letters do not count
    assert count_words("Wir haben frisches Brot gekauft") == 5


def test_language_lingua_cannot_identify_is_reported():
    with pytest.raises(LanguageCheckUnavailable, match="Amharic"):
        LineLanguageChecker("am")


def test_detector_set_includes_english_and_target():
    checker = LineLanguageChecker("sw", detector_codes=["fr"])
    assert checker.codes == ("en", "sw", "fr")
