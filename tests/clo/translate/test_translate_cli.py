"""`clo translate` and `clo tiny-m2m100` through Typer's test runner."""

import json

from typer.testing import CliRunner

from clo.cli import app

runner = CliRunner()


def _seed_file(path, n=3):
    rows = [
        {
            "prompt": f"What is tip {i} for cooking rice?",
            "response": f"Rinse the rice.\n\n- Use {i + 2} cups of water.\n- Rest it.",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_translate_writes_quadruples_and_report(tiny_m2m100, tmp_path):
    rows = _seed_file(tmp_path / "seed.jsonl")
    out, report = tmp_path / "out" / "quads.jsonl", tmp_path / "report.json"
    args = [
        "translate",
        str(tmp_path / "seed.jsonl"),
        "--target",
        "de",
        "--out",
        str(out),
        "--model",
        str(tiny_m2m100),
        "--quality-check",
        "off",
        "--beams",
        "1",
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--report-json",
        str(report),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Translation quality report" in result.output and "n_kept" in result.output
    quads = [json.loads(line) for line in out.read_text().splitlines()]
    assert [q["x_en"] for q in quads] == [r["prompt"] for r in rows]
    assert all(set(q) == {"x_en", "y_en", "x_tgt", "y_tgt"} for q in quads)
    assert all(q["y_tgt"].count("\n- ") == 2 for q in quads)  # list kept
    assert json.loads(report.read_text())["model_calls"] > 0

    again = runner.invoke(app, args)  # same cache dir: nothing to translate
    assert again.exit_code == 0, again.output
    assert json.loads(report.read_text())["model_calls"] == 0


def test_translate_reports_bad_input_clearly(tiny_m2m100, tmp_path):
    seed = tmp_path / "seed.jsonl"
    _seed_file(seed)
    base = [
        "translate",
        str(seed),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--model",
        str(tiny_m2m100),
        "--device",
        "cpu",
    ]
    bad_lang = runner.invoke(app, [*base, "--target", "klingon"])
    assert bad_lang.exit_code == 2 and "unknown language" in bad_lang.output
    bad_mode = runner.invoke(app, [*base, "--target", "de", "--quality-check", "maybe"])
    assert bad_mode.exit_code == 2 and "quality_check" in bad_mode.output
    seed.write_text('{"prompt": "hi"}\n')
    bad_seed = runner.invoke(app, [*base, "--target", "de"])
    assert bad_seed.exit_code == 2 and "response" in bad_seed.output
    assert not (tmp_path / "o.jsonl").exists()


def test_tiny_m2m100_command_builds_a_loadable_model(tmp_path):
    from transformers import AutoTokenizer

    result = runner.invoke(app, ["tiny-m2m100", str(tmp_path / "m"), "--arch", "nllb"])
    assert result.exit_code == 0, result.output
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    assert tok.convert_tokens_to_ids("swh_Latn") != tok.unk_token_id
    bad = runner.invoke(app, ["tiny-m2m100", str(tmp_path / "x"), "--arch", "t5"])
    assert bad.exit_code == 2
