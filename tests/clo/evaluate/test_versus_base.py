"""The base model beside the trained one: figures with intervals, a cache that saves the second
job every base generation, the shipped prompt set as a source, and the bundle's model card."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest

import clo.evaluate.base_side as base_side
from clo.evaluate.base_cache import FileBaseCache, base_cache_key, evaluator_versions
from clo.evaluate.job import evaluate_export
from clo.evaluate.prompt_sources import evaluation_sources
from clo.evaluate.report import EvaluationReport
from clo.pipeline import PipelineHooks, RunInputs, run_pipeline
from clo.resolve import LocalCatalog, ModelRef, ResolvedJob, resolve_job
from clo.seed import builtin_parallel
from clo.spec import JobSpec

HUB_ID = "example-org/tiny-qwen2"  # what the card must name, never the local folder


class _Catalog(LocalCatalog):
    """The library catalog, with the base model's public name mapped to a local folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def model(self, name: str, kind: Literal["base", "translator", "judge"]) -> ModelRef | None:
        return ModelRef(name=name, source=str(self.folder)) if name == HUB_ID else None


def _resolved(tiny: Path, **evaluation: Any) -> ResolvedJob:
    spec = JobSpec.model_validate(
        {
            "base_model": HUB_ID,
            "target_language": "de",
            "data_size": 10,
            "trainable": "lora",
            "seed_data": {"source": "parallel"},
            "hyperparameters": {"max_steps": 2, "batch_size": 2, "max_length": 96},
            "evaluation": {
                "heldout_size": 2,
                "max_new_tokens": 8,
                "prompt_set_limit": 4,
                "benchmarks": ["belebele"],
                "benchmark_source": "local",
                "benchmark_limit": 3,
                **evaluation,
            },
        }
    )
    return resolve_job(spec, _Catalog(tiny))


class _CountingGenerate:
    """Wraps the base side's generate_answers and counts the prompts it is asked."""

    def __init__(self, real: Any) -> None:
        self.real, self.prompts = real, 0

    def __call__(self, model: Any, tokenizer: Any, prompts: list[str], **kw: Any) -> list[str]:
        self.prompts += len(prompts)
        result: list[str] = self.real(model, tokenizer, prompts, **kw)
        return result


def _sums_match(bundle: Path) -> bool:
    lines = (bundle / "SHA256SUMS").read_text().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in lines)
    return all(
        hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
        for name, digest in listed.items()
    ) and set(listed) == {p.name for p in bundle.iterdir() if p.name != "SHA256SUMS"}


def test_job_reports_base_beside_trained_and_the_second_job_reuses_the_base(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = _resolved(tiny_qwen2)
    cache = FileBaseCache(tmp_path / "base-cache")
    spy = _CountingGenerate(base_side.generate_answers)
    monkeypatch.setattr(base_side, "generate_answers", spy)
    inputs = RunInputs(device="cpu", base_cache=cache)

    first = run_pipeline(resolved, tmp_path / "job1", PipelineHooks(), inputs)
    report = EvaluationReport.model_validate(first.evaluation)
    assert report.schema_version == "1.2"
    held, shipped = report.prompt_sources
    assert shipped.startswith("shipped:de@") and held == "heldout:2"
    assert report.language is not None and report.language.target_prompts.total == 4 + 2
    assert report.language.max_new_tokens == 8

    vb = report.versus_base
    assert vb is not None and vb.base.model == HUB_ID and vb.base.how == "adapter_disabled"
    assert (vb.base.cached, vb.base.generated_answers, vb.base.scored_benchmarks) == (
        False,
        2 * (4 + 2),
        2,
    )
    assert spy.prompts == 2 * (4 + 2)
    assert vb.base.cache_misses == 4 and vb.base.cache_hits == 0  # 2 sources + 2 benchmarks
    for name in ("usable_rate_target", "usable_rate_english", "pass_rate_target"):
        c = vb.metrics[name]
        assert c.base is not None and c.trained is not None
        assert c.base_interval is not None and c.trained_interval is not None
        assert c.base_interval.low <= c.base <= c.base_interval.high
        assert c.delta_low is not None and c.delta_high is not None
        assert c.delta_low <= c.delta <= c.delta_high and c.p_value is not None
        assert c.verdict and ("not distinguishable" in c.verdict or "distinguishable" in c.verdict)
    assert vb.metrics["usable_rate_target"].n == 6
    for reason in ("empty", "wrong_language", "echo", "loop"):
        assert f"failure_target_{reason}" in vb.metrics
    assert {"nll_target", "perplexity_target", "belebele_target", "belebele_english"} <= set(
        vb.metrics
    )
    assert vb.metrics["belebele_target"].n == 3
    assert set(vb.by_source) == {shipped, held}
    assert vb.by_source[shipped]["usable_rate_target"].n == 4
    assert vb.language is not None and vb.language.answer_verdicts[0].source == held
    assert vb.language.answer_verdicts[2].source == shipped

    # the bundle's card: language front matter, the public name, the headline numbers
    bundle = first.bundle_dir
    card = (bundle / "README.md").read_text()
    head = card.split("---")[1]
    assert "language:\n- de\n- en" in head and f"base_model: {HUB_ID}" in head
    assert str(tiny_qwen2) not in card
    assert "## Evaluation" in card and "usable answers in German to German prompts" in card
    assert card.index("## Evaluation") < card.index("## Load")
    assert _sums_match(bundle)
    # the export's card (a hard link in the bundle before packaging) is left alone
    assert (
        "## Evaluation" not in (tmp_path / "job1" / "train" / "adapter" / "README.md").read_text()
    )

    # a second job on the same base: every base result from the cache, no base generation
    spy.prompts = 0
    second = run_pipeline(resolved, tmp_path / "job2", PipelineHooks(), inputs)
    again = EvaluationReport.model_validate(second.evaluation)
    assert again.versus_base is not None
    assert (again.versus_base.base.cached, again.versus_base.base.generated_answers) == (True, 0)
    assert again.versus_base.base.scored_benchmarks == 0
    assert again.versus_base.base.cache_hits == 4
    assert spy.prompts == 0
    assert (
        again.versus_base.metrics["usable_rate_target"].base
        == vb.metrics["usable_rate_target"].base
    )
    assert again.versus_base.language == vb.language


def test_cache_key_follows_prompts_decoding_and_versions(tmp_path: Path) -> None:
    decoding = {"max_new_tokens": 128, "greedy": True}
    key = base_cache_key(
        kind="answers", model_source="m", revision=None, prompt_set_hash="a", decoding=decoding
    )
    same = base_cache_key(
        kind="answers", model_source="m", revision=None, prompt_set_hash="a", decoding=decoding
    )
    assert key == same and key.startswith("answers-")
    variants = [
        {"prompt_set_hash": "b"},
        {"decoding": {"max_new_tokens": 64, "greedy": True}},
        {"revision": "v2"},
        {"model_source": "other"},
        {"kind": "benchmark"},
        {"versions": {**evaluator_versions(), "verdict": "999"}},
    ]
    base_args: dict[str, Any] = {
        "kind": "answers",
        "model_source": "m",
        "revision": None,
        "prompt_set_hash": "a",
        "decoding": decoding,
    }
    keys = {base_cache_key(**{**base_args, **v}) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    assert set(evaluator_versions()) == {"evaluator", "verdict", "schema"}

    heldout = builtin_parallel("de")[:2]
    four, five = (evaluation_sources("de", heldout, n)[1] for n in (4, 5))
    assert four.digest != five.digest and four.name != five.name
    assert [s.name for s in evaluation_sources("de", heldout, 0)] == ["heldout:2"]
    assert [s.name for s in evaluation_sources("zh", heldout, 4)] == ["heldout:2"]  # no set

    cache = FileBaseCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, {"target": ["x"]})
    assert FileBaseCache(tmp_path).get(key) == {"target": ["x"]}
    (tmp_path / f"{key}.json").write_text("{not json")
    assert cache.get(key) is None  # a damaged entry is a miss
    with pytest.raises(ValueError):
        cache.get("../escape")
    assert not list(tmp_path.glob(".*partial"))


def test_full_model_export_scores_its_base_separately_and_decoding_changes_miss(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    # a "full fine-tune" that is the base itself: both sides answer identically
    exported = tmp_path / "export"
    shutil.copytree(tiny_qwen2, exported)
    resolved = _resolved(tiny_qwen2, benchmarks=[])
    heldout = builtin_parallel("de")[:2]
    cache = FileBaseCache(tmp_path / "cache")

    def run(res: ResolvedJob) -> EvaluationReport:
        data = evaluate_export(
            res,
            exported,
            heldout,
            device="cpu",
            progress=lambda _: None,
            should_stop=lambda: False,
            base_cache=cache,
        )
        return EvaluationReport.model_validate(json.loads(json.dumps(data)))

    report = run(resolved)
    vb = report.versus_base
    assert vb is not None and vb.base.how == "separate_model"
    assert vb.base.generated_answers == 12 and vb.base.model == HUB_ID
    usable = vb.metrics["usable_rate_target"]
    assert usable.base == usable.trained and usable.delta == 0.0
    assert usable.distinguishable is False and "not distinguishable" in (usable.verdict or "")
    assert vb.metrics["nll_target"].delta == pytest.approx(0.0, abs=1e-6)
    assert report.preference is not None and report.preference.reference == "precomputed"

    longer = resolved.model_copy(
        update={
            "spec": resolved.spec.model_copy(
                update={
                    "evaluation": resolved.spec.evaluation.model_copy(update={"max_new_tokens": 9})
                }
            )
        }
    )
    again = run(longer).versus_base
    assert again is not None and again.base.cache_hits == 0 and again.base.generated_answers == 12
    assert run(resolved).versus_base.base.cached is True  # type: ignore[union-attr]
