"""End to end: every metric of the report computed on a tiny model with an adapter."""

import json
import math

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from typer.testing import CliRunner

from clo.errors import CloError
from clo.evaluate import (
    Baseline,
    EvalConfig,
    EvaluationReport,
    OpenAIJudge,
    compare_reports,
    evaluate,
)
from clo.evaluate.judge import judge_prompt_sha256
from clo.seed import builtin_parallel

MARKER = "GOOD"  # the stub judge prefers answers containing it


@pytest.fixture(scope="module")
def heldout():
    return builtin_parallel("de")[:4]


@pytest.fixture(scope="module")
def adapter_dir(tiny_qwen2, tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights, saved the way training exports it."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    peft_model = get_peft_model(
        base,
        LoraConfig(
            r=4,
            lora_alpha=8,
            init_lora_weights=False,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        ),
    )
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def peft_model(tiny_qwen2, adapter_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    return (
        PeftModel.from_pretrained(base, str(adapter_dir)).eval(),
        AutoTokenizer.from_pretrained(tiny_qwen2),
    )


CONFIG = EvalConfig(
    max_new_tokens=8,
    prompt_set_limit=0,  # held-out prompts only: the shipped set is tested in test_versus_base
    bootstrap_resamples=200,
    benchmark_source="local",
    benchmark_limit=3,
    sample_size=2,
    judge_sample_size=2,
)


def test_report_has_every_metric(peft_model, heldout, stub_judge):
    model, tokenizer = peft_model
    events = []
    judge = OpenAIJudge(stub_judge.base_url, model="stub-judge")
    report = evaluate(model, tokenizer, heldout, "de", CONFIG, judge=judge, progress=events.append)

    data = report.model_dump(mode="json")
    assert data["schema_version"] == "1.2"
    assert EvaluationReport.model_validate(json.loads(json.dumps(data))) == report
    assert report.prompt_sources == ["heldout:4"]
    assert report.skipped == {}
    assert (report.target_language, report.heldout_size) == ("de", 4)

    lang = report.language
    for rate, expected in ((lang.target_prompts, "de"), (lang.english_prompts, "en")):
        assert rate.expected_language == expected and rate.total == 4
        assert rate.passed + rate.failed + rate.no_kept_lines == 4
        assert rate.judged == rate.passed + rate.failed
    assert lang.english_bias == lang.target_prompts.english_rate
    assert {"en", "de"} <= set(lang.detector_languages)
    assert [s.prompt_language for s in lang.samples] == ["de", "de", "en", "en"]
    assert lang.samples[0].prompt == heldout[0].x_tgt

    pref = report.preference
    assert pref.reference == "adapter_disabled"
    for d in ("en", "tgt"):
        stats = pref.directions[d]
        assert stats.n == 4 and stats.accuracy is not None
        assert stats.reward_margin_mean == pytest.approx(
            stats.chosen_reward_mean - stats.rejected_reward_mean
        )
    target_tokens = sum(
        len(tokenizer(q.y_tgt, add_special_tokens=False)["input_ids"]) + 1 for q in heldout
    )  # + EOS
    assert pref.nll["target"].tokens == target_tokens
    assert pref.nll["target"].perplexity == pytest.approx(math.exp(pref.nll["target"].nll))

    assert sorted((b.benchmark, b.language, b.n) for b in report.benchmarks) == [
        ("belebele", "de", 3),
        ("belebele", "en", 3),
        ("mmmlu", "de", 3),
        ("mmmlu", "en", 3),
    ]
    assert all(0.0 <= b.accuracy <= 1.0 for b in report.benchmarks)

    jr = report.judge
    assert jr.baseline == "base model (adapter disabled)"
    assert jr.prompt_version == "judge_v1" and jr.prompt_sha256 == judge_prompt_sha256()
    assert set(jr.results) == {"tgt", "en"}
    assert all(r.n == 4 for r in jr.results.values())
    assert len(stub_judge.requests) == 2 * 2 * 4  # two languages, both orders
    assert "api_key" not in json.dumps(jr.judge)

    assert [e["step"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["total_steps"] == len(events) and events[-1]["stage"] == "evaluating"
    assert set(report.timings_s) >= {"generation", "language", "preference", "judge"}
    assert {"base_generation", "versus_base"} <= set(report.timings_s)

    # the base (adapter disabled) beside the trained model, on the same prompts and items
    vb = report.versus_base
    assert vb.base.how == "adapter_disabled" and vb.base.generated_answers == 8
    assert vb.base.cached is False and vb.language.target_prompts.total == 4
    assert {"usable_rate_target", "pass_rate_english", "nll_target", "belebele_target"} <= set(
        vb.metrics
    )
    for name in ("mmmlu_english", "belebele_target"):
        assert vb.metrics[name].n == 3
    usable = vb.metrics["usable_rate_target"]
    assert usable.trained == lang.target_prompts.usable_rate
    assert usable.base == vb.language.target_prompts.usable_rate
    assert usable.verdict and "trained - base" in usable.verdict
    assert vb.metrics["nll_target"].trained == pytest.approx(pref.nll["target"].nll)


def test_baseline_answers_and_side_by_side(peft_model, heldout, stub_judge):
    model, tokenizer = peft_model
    judge = OpenAIJudge(stub_judge.base_url, model="stub-judge")
    config = CONFIG.model_copy(update={"benchmarks": [], "judge_english": False})
    strong = {q.x_tgt: f"Eine gute Antwort. {MARKER}" for q in heldout}
    lost = evaluate(
        model,
        tokenizer,
        heldout,
        "de",
        config,
        judge=judge,
        baseline=Baseline(name="sft", answers=strong),
    )
    res = lost.judge.results["tgt"]
    assert (res.wins, res.ties, res.losses, res.win_rate) == (0, 0, 4, 0.0)
    assert set(lost.judge.results) == {"tgt"}

    untrained = evaluate(model.get_base_model(), tokenizer, heldout, "de", config)
    assert untrained.preference.reference == "none"
    assert untrained.preference.directions["tgt"].accuracy is None
    assert untrained.skipped["judge"] == "no judge configured"

    table = compare_reports({"clo": lost, "base": untrained})
    assert table["target_language"] == "de"
    assert table["runs"]["clo"]["win_rate_target"] == 0.0
    assert table["runs"]["base"]["win_rate_target"] is None
    assert table["best"]["win_rate_target"] == "clo"
    assert table["runs"]["clo"]["perplexity_target"] == lost.preference.nll["target"].perplexity
    with pytest.raises(CloError, match="different target languages"):
        other = lost.model_copy(update={"target_language": "sw"})
        compare_reports({"a": lost, "b": other})


def test_bad_inputs_are_refused_clearly(peft_model, heldout):
    model, tokenizer = peft_model
    with pytest.raises(CloError, match="English"):
        evaluate(model, tokenizer, heldout, "en", CONFIG)
    with pytest.raises(CloError, match="non-empty list of Quadruple"):
        evaluate(model, tokenizer, [], "de", CONFIG)
    with pytest.raises(CloError, match="unknown language"):
        evaluate(model, tokenizer, heldout, "xx-nope", CONFIG)
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        EvalConfig(max_prompt_tokens=512, max_length=256)
    with pytest.raises(ValueError, match="belebele:de"):
        EvalConfig(benchmark_files={"belebele": "x.jsonl"})


def test_cli_writes_the_report(tiny_qwen2, adapter_dir, heldout, stub_judge, tmp_path):
    from clo.cli import app

    data = tmp_path / "heldout.jsonl"
    data.write_text(
        "".join(json.dumps(q.to_dict(), ensure_ascii=False) + "\n" for q in heldout[:2]),
        encoding="utf-8",
    )
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tiny_qwen2),
            "--adapter",
            str(adapter_dir),
            "--heldout",
            str(data),
            "-t",
            "de",
            "--out",
            str(out),
            "--max-new-tokens",
            "8",
            "--benchmarks",
            "mmmlu",
            "--benchmark-source",
            "local",
            "--benchmark-limit",
            "2",
            "--judge-url",
            stub_judge.base_url,
            "--judge-model",
            "stub-judge",
            "--device",
            "cpu",
            "--prompt-set-limit",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["schema_version"] == "1.2" and report["heldout_size"] == 2
    assert report["prompt_sources"][0] == "heldout:2"
    assert report["prompt_sources"][1].startswith("shipped:de@")
    assert report["language"]["target_prompts"]["total"] == 4 + 2
    assert report["versus_base"]["base"]["model"] == str(tiny_qwen2)
    assert "Δ" in result.output and "usable_rate_target" in result.output
    assert report["judge"]["results"]["tgt"]["n"] == 2
    assert [b["language"] for b in report["benchmarks"]] == ["de", "en"]
    assert "right-language rate, target prompts" in result.output
    assert "report written to" in result.output

    bad = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tiny_qwen2),
            "--heldout",
            str(data),
            "-t",
            "de",
            "--judge-url",
            "http://x",
        ],
    )
    assert bad.exit_code != 0 and "judge-model" in bad.output
