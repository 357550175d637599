"""The ctranslate2 backend gives the transformers backend's outputs on the same checkpoint.

Tiny random-weight models: the texts are random, but equal ids mean the conversion, the
vocabulary, the target-language prefix and the length cap all match generate()'s.
"""

from pathlib import Path

import pytest

from bench.bench_translate import seed_sentences
from clo.errors import CloError
from clo.translate import Decoding, FileTranslationCache, TranslatorConfig, make_translator
from clo.translate.ct2 import CTranslate2Translator, converted_model
from clo.translate.stage import translate_seed

pytest.importorskip("ctranslate2", reason="ctranslate2 not installed (pip extra ct2)")

GREEDY = Decoding(num_beams=1)


def _config(model: Path, cache: Path, **overrides: object) -> TranslatorConfig:
    settings: dict[str, object] = {
        "model": str(model),
        "device": "cpu",
        "decoding": GREEDY,
        "quality_check": "off",
        "backend": "ctranslate2",
        "ct2_cache_dir": str(cache),
    }
    settings.update(overrides)
    return TranslatorConfig.model_validate(settings)


@pytest.fixture(scope="module")
def ct2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ct2_cache")


def test_float32_greedy_equals_transformers(greedy_translator, tiny_m2m100, ct2_cache) -> None:
    sentences = seed_sentences(20)
    ct2 = make_translator(_config(tiny_m2m100, ct2_cache))
    assert isinstance(ct2, CTranslate2Translator) and ct2.compute_type == "float32"
    for target in ("de", "sw"):
        expected = greedy_translator.translate(sentences, "en", target)
        got = ct2.translate(sentences, "en", target)
        assert got == expected
        # a random model still writes something: equal empty strings would prove nothing
        assert all(got)
    # same batch plan: one engine call per transformers generate() call
    assert ct2.model_calls == 2 * len(ct2.plan(sentences))


def test_beam_search_and_nllb_also_equal(make_translator, tiny_nllb, ct2_cache) -> None:
    sentences = seed_sentences(20)
    beam = Decoding(num_beams=4)
    hf = make_translator(decoding=beam)
    ct2 = CTranslate2Translator(_config(Path(hf.config.model), ct2_cache, decoding=beam))
    assert ct2.translate(sentences, "en", "de") == hf.translate(sentences, "en", "de")

    nllb_hf = make_translator(model=str(tiny_nllb))
    nllb = CTranslate2Translator(_config(tiny_nllb, ct2_cache))
    assert nllb.code_table == "nllb"
    assert nllb.translate(sentences, "en", "yo") == nllb_hf.translate(sentences, "en", "yo")


def test_conversion_cached_and_redone_when_the_checkpoint_changes(tiny_m2m100, tmp_path) -> None:
    config = _config(tiny_m2m100, tmp_path / "cache")
    first = converted_model(config)
    assert (first / "model.bin").is_file()
    stamp = (first / "model.bin").stat().st_mtime_ns
    assert converted_model(config) == first  # reused, not converted again
    assert (first / "model.bin").stat().st_mtime_ns == stamp
    # a rebuilt checkpoint in the same folder is converted anew, not served stale
    copy = tmp_path / "model"
    copy.mkdir()
    for f in tiny_m2m100.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    other = converted_model(_config(copy, tmp_path / "cache"))
    assert other != first and (other / "model.bin").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def test_int8_runs_and_keys_the_cache_apart(greedy_translator, tiny_m2m100, ct2_cache, tmp_path):
    from clo.seed import SeedExample

    int8 = make_translator(_config(tiny_m2m100, ct2_cache, compute_type="int8"))
    assert int8.output_id.endswith("#ctranslate2:int8")
    examples = [SeedExample("Write a short poem about rain.", "Rain falls softly on the roof.")]
    cache = FileTranslationCache(tmp_path / "translations")
    translate_seed(examples, "de", greedy_translator, cache=cache)
    # int8 may translate differently: the transformers entries must not be served to it
    report = translate_seed(examples, "de", int8, cache=cache).report
    assert report["model_calls"] >= 1 and report["cache_hits"] == 0
    again = translate_seed(examples, "de", int8, cache=cache).report
    assert again["model_calls"] == 0


def test_bad_settings_name_the_field(tiny_m2m100, ct2_cache) -> None:
    with pytest.raises(ValueError, match="compute_type applies only to backend"):
        TranslatorConfig(model=str(tiny_m2m100), compute_type="int8")
    with pytest.raises(ValueError, match="backend"):
        TranslatorConfig(model=str(tiny_m2m100), backend="fairseq")  # type: ignore[arg-type]
    # float16 has no CPU kernels in ctranslate2: refused by name before any conversion
    with pytest.raises(CloError, match="compute_type: 'float16'"):
        make_translator(_config(tiny_m2m100, ct2_cache, compute_type="float16"))


def test_pipeline_translates_with_the_machines_backend(tiny_m2m100, tmp_path, monkeypatch):
    from clo.pipeline import PipelineHooks, RunInputs, stage_translate
    from clo.resolve import LocalCatalog, resolve_job
    from clo.spec import JobSpec

    monkeypatch.setenv("CLO_CT2_CACHE", str(tmp_path / "ct2"))
    spec = JobSpec.model_validate(
        {
            "base_model": "tiny",
            "target_language": "de",
            "data_size": 8,
            "seed_data": {"source": "builtin"},
            "translator": {"model": str(tiny_m2m100), "num_beams": 1, "quality_check": "off"},
        }
    )
    resolved = resolve_job(spec, LocalCatalog())
    quads = {}
    for backend in ("transformers", "ctranslate2"):
        inputs = RunInputs(device="cpu", translator_backend=backend)
        path, report = stage_translate(resolved, tmp_path / backend, PipelineHooks(), inputs)
        assert report["model_calls"] >= 1 and report["n_kept"] >= 8
        assert report["engine"] == ("ctranslate2:float32" if backend != "transformers" else backend)
        quads[backend] = path.read_text(encoding="utf-8")
    assert (tmp_path / "ct2").is_dir()  # converted where CLO_CT2_CACHE says
    assert quads["ctranslate2"] == quads["transformers"]


def test_cli_translate_with_the_ctranslate2_backend(tiny_m2m100, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from clo.cli import app

    monkeypatch.setenv("CLO_CT2_CACHE", str(tmp_path / "ct2"))
    seed = tmp_path / "seed.jsonl"
    seed.write_text(json.dumps({"prompt": "How do I boil an egg?", "response": "Boil it."}) + "\n")
    common = ["translate", str(seed), "-t", "de", "--model", str(tiny_m2m100), "--beams", "1"]
    common += ["--quality-check", "off", "--device", "cpu"]
    out, report = tmp_path / "quads.jsonl", tmp_path / "report.json"
    args = [*common, "-o", str(out), "--report-json", str(report)]
    result = CliRunner().invoke(app, [*args, "--backend", "ctranslate2", "--compute-type", "int8"])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["engine"] == "ctranslate2:int8"
    assert len(out.read_text().splitlines()) == 1
    refused = CliRunner().invoke(app, [*args, "--compute-type", "int8"])
    assert refused.exit_code != 0 and "compute_type applies only to backend" in refused.output
