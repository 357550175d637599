"""Option log-likelihood scoring and the BELEBELE / MMMLU loaders."""

import copy
import json
import math

import pytest
import torch

from clo.evaluate.multiple_choice import (
    BenchmarkDataError,
    MCItem,
    benchmark_result,
    item_prompt,
    load_items,
    parse_belebele,
    parse_mmmlu,
    run_benchmark,
    score_items,
)

OPTIONS = ("sunflower meadow", "granite quarry", "violet harbour", "copper kettle")


def _option_ids(tokenizer, option):
    return tokenizer(" " + option, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def forced_model(qwen2_loaded):
    """The tiny model with an LM head whose output strongly favours the tokens of OPTIONS[2].

    The head's weights are zeroed and a bias added, so every next-token distribution is
    softmax(bias): the favoured option's tokens each get log-prob close to 0 while every
    other token gets about -20, whatever the prompt.
    """
    model, tokenizer = qwen2_loaded
    forced = copy.deepcopy(model)
    head = torch.nn.Linear(forced.lm_head.in_features, forced.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[_option_ids(tokenizer, OPTIONS[2])] = 20.0
    forced.lm_head = head
    return forced, tokenizer


def test_option_made_likely_by_construction_wins(forced_model):
    model, tokenizer = forced_model
    favoured = set(_option_ids(tokenizer, OPTIONS[2]))
    for other in (0, 1, 3):  # the construction needs each wrong option to have another token
        assert not set(_option_ids(tokenizer, OPTIONS[other])) <= favoured
    items = [
        MCItem(
            "Where did they meet?",
            OPTIONS,
            answer=2,
            passage="They met at the violet harbour at dawn.",
        ),
        MCItem(
            "Where did they meet?", OPTIONS, answer=0, passage="They met in a sunflower meadow."
        ),
    ]
    scores = score_items(model, tokenizer, items, batch_size=3)
    assert [s.predicted for s in scores] == [2, 2]
    assert [s.predicted_norm for s in scores] == [2, 2]
    # every position predicts softmax(bias): log p(t) = bias[t] - logsumexp(bias)
    vocab = model.lm_head.out_features
    lse = math.log(len(favoured) * math.exp(20.0) + vocab - len(favoured))
    for k, option in enumerate(OPTIONS):
        ids = _option_ids(tokenizer, option)
        expected = sum(20.0 if t in favoured else 0.0 for t in ids) - len(ids) * lse
        assert scores[0].logprobs[k] == pytest.approx(expected, abs=1e-3)
        assert scores[1].logprobs[k] == pytest.approx(expected, abs=1e-3)
    result = benchmark_result("belebele", "en", "test", scores)
    assert (result.n, result.accuracy, result.accuracy_norm) == (2, 0.5, 0.5)


def test_option_scores_equal_a_direct_forward_pass(qwen2_loaded):
    model, tokenizer = qwen2_loaded
    item = MCItem("Which one?", ("a red apple", "blue"), answer=1, passage="Das ist ein Test.")
    scores = score_items(model, tokenizer, [item], batch_size=1)[0]
    prompt_ids = tokenizer(item_prompt(item))["input_ids"]
    for k, option in enumerate(item.options):
        opt_ids = _option_ids(tokenizer, option)
        ids = torch.tensor([prompt_ids + opt_ids])
        with torch.no_grad():
            logps = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        expected = sum(float(logps[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(opt_ids))
        assert scores.logprobs[k] == pytest.approx(expected, abs=1e-4)
    assert scores.byte_lengths == (len(" a red apple"), len(" blue"))


def test_shipped_fixtures_are_parallel_across_languages():
    for bench in ("belebele", "mmmlu"):
        by_lang = {}
        for lang in ("en", "de", "zh", "sw"):
            items, source = load_items(bench, lang, source="local")
            assert source == f"local:eval_{bench}_{lang}.jsonl"
            assert all(len(it.options) == 4 and 0 <= it.answer < 4 for it in items)
            by_lang[lang] = [it.answer for it in items]
        assert len(by_lang["en"]) >= 5
        assert all(answers == by_lang["en"] for answers in by_lang.values())  # translations
    belebele_de, _ = load_items("belebele", "de", source="local")
    assert belebele_de[0].passage and "Dorfbibliothek" in belebele_de[0].passage


def test_auto_falls_back_to_local_when_the_hub_is_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    items, source = load_items("mmmlu", "de", source="auto")
    assert source == "local:eval_mmmlu_de.jsonl" and items
    with pytest.raises(BenchmarkDataError, match="hub"):
        load_items("mmmlu", "de", source="hub")
    with pytest.raises(BenchmarkDataError, match='benchmark_files\\["belebele:yo"\\]'):
        load_items("belebele", "yo", source="local")


def test_user_files_in_hub_schema(tmp_path, qwen2_loaded):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "flores_passage": "Juma ana paka mweusi.",
            "question": "Paka ni rangi gani?",
            "mc_answer1": "mweupe",
            "mc_answer2": "mweusi",
            "mc_answer3": "mwekundu",
            "mc_answer4": "kijani",
            "correct_answer_num": "2",
            "dialect": "swh_Latn",
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bele_sw.parquet")
    mmlu = tmp_path / "mmlu_en.jsonl"  # cais/mmlu schema
    mmlu.write_text(
        json.dumps(
            {"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "math"}
        )
        + "\n"
    )
    files = {"belebele:sw": str(tmp_path / "bele_sw.parquet"), "mmmlu:en": str(mmlu)}
    items, source = load_items("belebele", "sw", files=files)
    assert items[0].answer == 1 and items[0].options[1] == "mweusi"
    assert source.startswith("file:")
    model, tokenizer = qwen2_loaded
    result = run_benchmark(model, tokenizer, "mmmlu", "en", files=files)
    assert result.n == 1 and result.language == "en"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {
                "question": "q",
                "mc_answer1": "a",
                "mc_answer2": "b",
                "mc_answer3": "c",
                "mc_answer4": "d",
                "correct_answer_num": "2",
            },
            "flores_passage",
        ),
        (
            {
                "flores_passage": "p",
                "question": "q",
                "mc_answer1": "a",
                "mc_answer2": "b",
                "mc_answer3": "c",
                "mc_answer4": "d",
                "correct_answer_num": "5",
            },
            "correct_answer_num",
        ),
    ],
)
def test_bad_belebele_rows_name_the_field(row, message):
    with pytest.raises(BenchmarkDataError, match=message):
        parse_belebele(row, "file.jsonl row 3")


def test_bad_mmmlu_rows_name_the_field():
    with pytest.raises(BenchmarkDataError, match="Answer"):
        parse_mmmlu({"Question": "q", "A": "a", "B": "b", "C": "c", "D": "d", "Answer": "E"})
    with pytest.raises(BenchmarkDataError, match="MMMLU schema"):
        parse_mmmlu({"prompt": "q"})


def test_invalid_json_line_is_reported_with_its_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Question": "q"}\n{not json}\n')
    with pytest.raises(BenchmarkDataError, match="line 2"):
        load_items("mmmlu", "de", files={"mmmlu:de": str(bad)})


def test_limit_takes_a_seeded_sample_not_the_first_rows(qwen2_loaded):
    model, tokenizer = qwen2_loaded
    first = run_benchmark(model, tokenizer, "mmmlu", "de", source="local", limit=2)
    again = run_benchmark(model, tokenizer, "mmmlu", "de", source="local", limit=2)
    assert first.n == 2 and first.source.endswith("(sample of 2, seed 0)")
    assert first == again
    full = run_benchmark(model, tokenizer, "mmmlu", "de", source="local", limit=None)
    assert full.n == 6 and full.source == "local:eval_mmmlu_de.jsonl"
