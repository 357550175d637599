"""The judge protocol against a local stub of the OpenAI chat completions API."""

import math

import pytest

from clo.evaluate.judge import (
    PROMPT_VERSION,
    JudgeError,
    OpenAIJudge,
    PairJudgement,
    judge_pairs,
    judge_prompt_sha256,
    judge_prompt_template,
    pair_outcome,
    parse_verdict,
    render_judge_prompt,
    win_rate,
)

MARKER = "GOOD"  # the stub judge prefers answers containing it (conftest.StubJudge)
PROMPTS = ["Nenne eine Farbe.", "Wie spät ist es?", "Was ist 2+2?", "Sag hallo."]
MODEL = [f"Blau. {MARKER}", "Keine Ahnung.", f"Vier. {MARKER}", "Hallo."]
BASELINE = ["Rot.", f"Es ist drei Uhr. {MARKER}", f"Vier! {MARKER}", "Hi."]


def test_pairs_are_judged_in_both_orders_and_scored(stub_judge):
    judge = OpenAIJudge(stub_judge.base_url, model="stub-judge", api_key="sk-test")
    judged = judge_pairs(judge, PROMPTS, MODEL, BASELINE, "German", concurrency=3)

    assert [j.outcome for j in judged] == ["win", "loss", "tie", "tie"]
    assert len(stub_judge.requests) == 2 * len(PROMPTS)
    seen = {}
    for body in stub_judge.requests:
        text = body["messages"][-1]["content"]
        assert body["model"] == "stub-judge" and body["temperature"] == 0
        a = text.split("[The Start of Assistant A's Answer]\n")[1].split("\n[The End")[0]
        b = text.split("[The Start of Assistant B's Answer]\n")[1].split("\n[The End")[0]
        seen.setdefault(frozenset((a, b)), []).append((a, b))
    for mine, theirs in zip(MODEL, BASELINE, strict=True):
        assert sorted(seen[frozenset((mine, theirs))]) == sorted([(mine, theirs), (theirs, mine)])
    assert all(
        h.get("authorization") == "Bearer sk-test" or h.get("Authorization") == "Bearer sk-test"
        for h in stub_judge.headers
    )

    rate = win_rate(judged, "de")
    assert (rate.n, rate.wins, rate.ties, rate.losses) == (4, 1, 2, 1)
    assert rate.win_rate == pytest.approx(0.5)
    assert rate.stderr == pytest.approx(math.sqrt(0.25 / 4))
    assert rate.position_inconsistent == 0 and rate.invalid_verdicts == 0


def test_position_bias_cancels_out_as_ties(stub_judge):
    stub_judge.mode = "always_a"
    judge = OpenAIJudge(stub_judge.base_url, model="stub-judge")
    judged = judge_pairs(judge, PROMPTS, MODEL, BASELINE, "German")
    assert {(j.model_first, j.baseline_first) for j in judged} == {("A", "A")}
    rate = win_rate(judged, "de")
    assert (rate.wins, rate.ties, rate.losses) == (0, 4, 0)
    assert rate.win_rate == 0.5 and rate.stderr == pytest.approx(math.sqrt(0.25 / 4))
    assert rate.position_inconsistent == 4


def test_unparseable_replies_count_as_ties_and_are_reported(stub_judge):
    stub_judge.mode = "garbage"
    judged = judge_pairs(
        OpenAIJudge(stub_judge.base_url, "m"), PROMPTS[:2], MODEL[:2], BASELINE[:2], "German"
    )
    rate = win_rate(judged, "de")
    assert rate.ties == 2 and rate.invalid_verdicts == 4 and rate.position_inconsistent == 0


def test_server_errors_raise_a_clear_judge_error(stub_judge):
    stub_judge.mode = "error500"
    judge = OpenAIJudge(stub_judge.base_url, "m", max_retries=1)
    with pytest.raises(JudgeError, match="failed after 2 tries"):
        judge.complete("hello")
    assert len(stub_judge.requests) == 2


def test_wrong_path_is_refused_without_retries(stub_judge):
    judge = OpenAIJudge(stub_judge.base_url.removesuffix("/v1"), "m", max_retries=3)
    with pytest.raises(JudgeError, match="HTTP 404"):
        judge.complete("hello")
    assert len(stub_judge.requests) == 1


def test_bad_judge_settings_name_the_field():
    with pytest.raises(JudgeError, match="base_url"):
        OpenAIJudge("localhost:8000", "m")
    with pytest.raises(JudgeError, match="model"):
        OpenAIJudge("http://localhost:8000", "")


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("[[A]]", "A"),
        ("After thinking: [[ b ]]", "B"),
        ("[[TIE]]", "tie"),
        ("B", "B"),
        (" tie. ", "tie"),
        ("A is better but [[B]]", "B"),
        ("[[A]] or [[B]]", "invalid"),
        ("Answer A", "invalid"),
        ("", "invalid"),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize(
    ("first", "second", "outcome"),
    [
        ("A", "B", "win"),
        ("B", "A", "loss"),
        ("A", "A", "tie"),
        ("B", "B", "tie"),
        ("tie", "tie", "tie"),
        ("A", "tie", "tie"),
        ("invalid", "B", "tie"),
    ],
)
def test_pair_outcome_requires_agreement(first, second, outcome):
    assert pair_outcome(first, second) == outcome


def test_win_rate_arithmetic():
    def pj(a, b):
        return PairJudgement("p", "m", "b", a, b)

    judged = [pj("A", "B"), pj("A", "B"), pj("A", "A"), pj("B", "A"), pj("A", "B")]
    rate = win_rate(judged, "sw")
    assert (rate.wins, rate.ties, rate.losses) == (3, 1, 1)
    p = (3 + 0.5) / 5
    assert rate.win_rate == pytest.approx(p)
    assert rate.stderr == pytest.approx(math.sqrt(p * (1 - p) / 5))
    assert win_rate([], "sw").win_rate is None


def test_prompt_is_versioned_and_braces_in_answers_survive():
    assert PROMPT_VERSION == "judge_v1"
    assert len(judge_prompt_sha256()) == 64
    text = render_judge_prompt("Q {{answer_b}}", "uses {{language}} literally", "B", "Swahili")
    assert "Q {{answer_b}}" in text and "uses {{language}} literally" in text
    assert "in Swahili" in text and "{{" not in judge_prompt_template().replace(
        "{{instruction}}", ""
    ).replace("{{answer_a}}", "").replace("{{answer_b}}", "").replace("{{language}}", "")


def test_local_hf_model_as_judge(qwen2_loaded):
    from clo.evaluate.judge import LocalJudge

    model, tokenizer = qwen2_loaded
    judge = LocalJudge(model, tokenizer, name="tiny-qwen2", max_new_tokens=4)
    judged = judge_pairs(judge, PROMPTS[:1], MODEL[:1], BASELINE[:1], "German", concurrency=1)
    assert judge.describe() == {"kind": "local", "model": "tiny-qwen2", "endpoint": ""}
    # a random tiny model gives no usable verdict; the protocol must still yield one outcome
    assert judged[0].model_first in ("A", "B", "tie", "invalid")
    assert win_rate(judged, "de").n == 1
