"""Answer verdicts in the report's language section (schema 1.1), and 1.0 reports still load."""

import json

import pytest

from clo.evaluate import SCHEMA_VERSION, EvalConfig, EvaluationReport
from clo.evaluate.language_check import LineLanguageChecker, pass_rate
from clo.evaluate.report import (
    AnswerSample,
    LanguageRate,
    LanguageReport,
    LineResult,
    add_answer_verdicts,
)
from clo.evaluate.stats import wilson_interval
from clo.evaluate.verdict import VERDICT_VERSION, VerdictConfig
from tests.support.evaluation_reports import RATE_FIELDS_1_1

PROMPTS_DE = [
    "Erkläre, warum der Himmel blau ist.",
    "Beschreibe einen typischen Tag in deinem Leben.",
    "Nenne einen Vorteil des Radfahrens.",
    "Was ist die Hauptstadt von Frankreich?",
]
ANSWERS_DE = [
    "Der Himmel ist blau, weil das Sonnenlicht an den winzigen Molekülen der Luft gestreut wird.",
    'This is a German phrase that translates to "Beschreibe einen typischen Tag in deinem Leben".',
    'Nenne: "Nenne einen Vorteil des Radfahrens."',
    "",
]
PROMPTS_EN = ["Explain why the sky is blue.", "Name one benefit of cycling."]
ANSWERS_EN = [
    "The sky is blue because sunlight is scattered by the tiny molecules in the air.",
    "Cycling is good, cycling is good, cycling is good, cycling is good, cycling is good.",
]


def _section(sample_size: int = 2) -> LanguageReport:
    """A language section the way the evaluation stage builds it before the verdicts."""
    checker = LineLanguageChecker("de")
    rates, samples = {}, []
    for lang, prompts, answers in (("de", PROMPTS_DE, ANSWERS_DE), ("en", PROMPTS_EN, ANSWERS_EN)):
        verdicts = [checker.check(a, lang) for a in answers]
        agg = pass_rate(verdicts)
        rates[lang] = LanguageRate(
            expected_language=lang,
            total=agg.total,
            judged=agg.judged,
            passed=agg.passed,
            failed=agg.failed,
            no_kept_lines=agg.no_kept_lines,
            pass_rate=agg.pass_rate,
            english_rate=agg.english_rate,
        )
        samples += [
            AnswerSample(
                prompt_language=lang,
                prompt=p,
                answer=a,
                verdict=v.verdict,
                lines=[LineResult(**ln.__dict__) for ln in v.lines],
            )
            for p, a, v in list(zip(prompts, answers, verdicts, strict=True))[:sample_size]
        ]
    return LanguageReport(
        detector="lingua-language-detector",
        detector_languages=list(checker.codes),
        min_words_per_line=5,
        max_new_tokens=32,
        target_prompts=rates["de"],
        english_prompts=rates["en"],
        english_bias=rates["de"].english_rate,
        samples=samples,
    )


def test_language_section_gets_usable_rates_reasons_and_records():
    section = _section()
    # the line-level pass rate alone counts the English prose and the echo as passes
    assert (section.target_prompts.passed, section.target_prompts.judged) == (3, 3)
    add_answer_verdicts(section, VerdictConfig(), PROMPTS_DE, ANSWERS_DE, PROMPTS_EN, ANSWERS_EN)

    tgt, en = section.target_prompts, section.english_prompts
    assert (tgt.usable, tgt.undecided, tgt.usable_rate) == (1, 0, 0.25)
    assert (tgt.usable_interval.low, tgt.usable_interval.high) == pytest.approx(
        wilson_interval(1, 4)
    )
    assert tgt.failure_reasons == {"empty": 1, "wrong_language": 1, "echo": 1, "loop": 0}
    assert tgt.primary_failure_reasons == tgt.failure_reasons
    assert tgt.pass_rate == 1.0  # kept, with its meaning
    assert (tgt.pass_rate_interval.low, tgt.pass_rate_interval.high) == pytest.approx(
        wilson_interval(3, 3)
    )
    assert (en.usable, en.usable_rate) == (1, 0.5)
    assert en.failure_reasons == {"empty": 0, "wrong_language": 0, "echo": 0, "loop": 1}

    assert section.verdict_version == VERDICT_VERSION
    records = [(r.prompt_language, r.index, r.primary_reason) for r in section.answer_verdicts]
    assert records == [
        ("de", 0, None),
        ("de", 1, "wrong_language"),
        ("de", 2, "echo"),
        ("de", 3, "empty"),
        ("en", 0, None),
        ("en", 1, "loop"),
    ]
    assert section.answer_verdicts[1].language == "en"
    by_answer = {s.answer: (s.usable, s.reasons) for s in section.samples}
    assert by_answer[ANSWERS_DE[0]] == (True, [])
    assert by_answer[ANSWERS_DE[1]] == (False, ["wrong_language"])
    assert by_answer[ANSWERS_EN[1]] == (False, ["loop"])


def test_report_round_trips_and_reports_of_schema_1_0_still_load():
    section = _section()
    add_answer_verdicts(section, VerdictConfig(), PROMPTS_DE, ANSWERS_DE, PROMPTS_EN, ANSWERS_EN)
    report = EvaluationReport(
        model="m",
        target_language="de",
        target_language_name="German",
        heldout_size=4,
        config=EvalConfig().model_dump(mode="json"),
        language=section,
    )
    data = json.loads(json.dumps(report.model_dump(mode="json")))
    assert data["schema_version"] == SCHEMA_VERSION == "1.2"
    assert data["config"]["verdict"] == VerdictConfig().model_dump(mode="json")
    assert EvaluationReport.model_validate(data) == report

    old = json.loads(json.dumps(data))
    old["schema_version"] = "1.0"
    lang = old["language"]
    for key in ("verdict_version", "answer_verdicts"):
        del lang[key]
    for rate in (lang["target_prompts"], lang["english_prompts"]):
        for key in RATE_FIELDS_1_1:
            del rate[key]
    for sample in lang["samples"]:
        del sample["usable"], sample["reasons"]
    del old["config"]["verdict"]
    loaded = EvaluationReport.model_validate(old)
    assert loaded.schema_version == "1.0"
    assert loaded.language.target_prompts.usable_rate is None
    assert loaded.language.answer_verdicts == []


def test_eval_config_carries_verdict_thresholds():
    config = EvalConfig.model_validate({"verdict": {"echo_token_share": 0.9}})
    assert config.verdict.echo_token_share == 0.9
    assert EvalConfig().verdict == VerdictConfig()


def test_reports_of_schema_1_1_still_load():
    section = _section()
    add_answer_verdicts(
        section,
        VerdictConfig(),
        PROMPTS_DE,
        ANSWERS_DE,
        PROMPTS_EN,
        ANSWERS_EN,
        source_names=["heldout:4"] * 4,
    )
    report = EvaluationReport(
        model="m",
        target_language="de",
        target_language_name="German",
        heldout_size=4,
        config=EvalConfig().model_dump(mode="json"),
        prompt_sources=["heldout:4"],
        language=section,
    )
    data = json.loads(json.dumps(report.model_dump(mode="json")))
    assert data["language"]["answer_verdicts"][0]["source"] == "heldout:4"
    assert data["language"]["samples"][0]["source"] == "heldout:4"
    assert data["versus_base"] is None

    old = json.loads(json.dumps(data))
    old["schema_version"] = "1.1"
    for key in ("prompt_sources", "versus_base"):
        del old[key]
    for record in old["language"]["answer_verdicts"]:
        del record["source"]
    for sample in old["language"]["samples"]:
        del sample["source"]
    for key in ("prompt_set_limit", "compare_base", "bootstrap_resamples"):
        del old["config"][key]
    loaded = EvaluationReport.model_validate(old)
    assert loaded.schema_version == "1.1" and loaded.prompt_sources == []
    assert loaded.versus_base is None and loaded.language.answer_verdicts[0].source is None
