"""translate_seed end to end on the tiny M2M100: batching, structure, cache, quality drops."""

import re

import pytest

from clo.errors import CloError, Stopped
from clo.seed import SeedExample
from clo.translate import Decoding, FileTranslationCache, cache_key, translate_seed
from clo.translate.segment import digit_runs

FENCE = re.compile(r"```.*?```\n", re.DOTALL)

RESPONSE = """To boil an egg, bring 500 ml of water to a boil. Lower the egg in gently.

Steps:
- Boil soft eggs for 6 minutes.
* Boil hard eggs for 10 minutes, see https://example.com/eggs?size=L for sizes.
1. Cool them in cold water. Peel them after 2 minutes.

```python
def boil(egg, minutes=6):
    return egg.cook(minutes)  # Keep this comment in English.
```

## Serving
Use `salt` and pepper. Enjoy!
"""


def _examples(n: int) -> list[SeedExample]:
    return [
        SeedExample(f"How long should I boil egg {i}?", RESPONSE.replace("500", str(500 + i)))
        for i in range(n)
    ]


def _assert_structure_kept(source: str, translated: str) -> None:
    assert FENCE.findall(source) == FENCE.findall(translated) != []  # code byte-for-byte
    src_lines, out_lines = source.splitlines(), translated.splitlines()
    assert len(src_lines) == len(out_lines)
    for src, out in zip(src_lines, out_lines, strict=True):
        assert (src.strip() == "") == (out.strip() == "")
        marker = re.match(r"^(- |\* |\d+\. |## )", src)
        if marker:
            assert out.startswith(marker.group(1))
    assert "https://example.com/eggs?size=L" in translated and "`salt`" in translated
    assert not digit_runs(source) - digit_runs(translated)  # every number survived


def test_end_to_end_structure_numbers_and_urls(make_translator):
    translator = make_translator(batch_tokens=512)
    examples = _examples(4)
    result = translate_seed(examples, "de", translator)
    report = result.report
    assert [(q.x_en, q.y_en) for q in result.quadruples] == [
        (e.prompt, e.response) for e in examples
    ]
    for q in result.quadruples:
        _assert_structure_kept(q.y_en, q.y_tgt)
        assert q.y_tgt != q.y_en and q.x_tgt != q.x_en
    assert report["n_input"] == report["n_kept"] == 4
    assert report["quality_check"] == "off" and report["language_id_checked"] is None
    # identical sentences across examples are translated once
    assert report["segments_total"] < 4 * 12
    # one generate() call per token-budget batch, many segments per call
    assert 0 < report["model_calls"] < report["segments_translated"]
    assert report["sentences_per_second"] > 0


def test_smaller_token_budget_means_more_batches(make_translator):
    examples = _examples(2)
    few = translate_seed(examples, "de", make_translator(batch_tokens=100_000)).report
    many = translate_seed(examples, "de", make_translator(batch_tokens=64)).report
    assert few["segments_translated"] == many["segments_translated"]
    assert many["model_calls"] > few["model_calls"] >= 1


def test_second_run_is_served_from_the_cache(make_translator, tmp_path):
    translator = make_translator()
    examples = _examples(3)
    first = translate_seed(examples, "sw", translator, cache=FileTranslationCache(tmp_path))
    assert first.report["model_calls"] > 0 and first.report["cache_hits"] == 0

    reopened = FileTranslationCache(tmp_path)  # another process would see the same file
    second = translate_seed(examples, "sw", translator, cache=reopened)
    assert second.report["model_calls"] == 0  # nothing reached the model
    assert second.report["segments_translated"] == 0
    assert second.report["cache_hits"] == first.report["segments_translated"] == len(reopened)
    assert second.quadruples == first.quadruples

    # a partly new text reuses the cached sentences and translates only the new one
    extra = examples + [SeedExample("A brand new question about eggs?", RESPONSE)]
    third = translate_seed(extra, "sw", translator, cache=reopened)
    assert third.report["model_calls"] >= 1
    assert third.report["segments_translated"] == 1
    assert third.quadruples[:3] == first.quadruples

    # other target language or other decoding: different keys, translated again
    other = translate_seed(examples[:1], "yo", translator, cache=reopened)
    assert other.report["cache_hits"] == 0 and other.report["model_calls"] > 0
    beams = make_translator(decoding=Decoding(num_beams=2))
    assert translate_seed(examples[:1], "sw", beams, cache=reopened).report["cache_hits"] == 0


# Hand-written German for planted outputs: (English source, planted translation).
GOOD = [
    ("How do I keep my kitchen clean every day?", "Wie halte ich meine Küche jeden Tag sauber?"),
    (
        "What should I pack for a weekend of hiking?",
        "Was sollte ich für ein Wanderwochenende einpacken?",
    ),
    (
        "Which vegetables grow well on a small balcony?",
        "Welches Gemüse wächst gut auf einem kleinen Balkon?",
    ),
    ("How can I fall asleep faster at night?", "Wie kann ich nachts schneller einschlafen?"),
    ("Why do cats like to sit in boxes so much?", "Warum sitzen Katzen so gern in Kartons?"),
]
RESPONSES = [
    "Wipe the counters after cooking and wash the dishes before going to bed.",
    "Bring sturdy shoes, a warm jacket, enough water and a map of the area.",
    "Tomatoes, lettuce and herbs such as basil grow well in large pots.",
    "Keep a regular bedtime, avoid screens late in the evening and keep the room cool.",
    "Boxes feel safe and warm, and they let a cat watch its surroundings unseen.",
]
PLANTED = [
    ("Wische nach dem Kochen die Arbeitsflächen ab und spüle das Geschirr vor dem Schlafen.", None),
    (RESPONSES[1], "wrong_language"),  # the English copied through
    ("Tomaten, Salat Salat Salat Salat Salat und Kräuter wachsen gut.", "repetition"),
    ("", "empty"),
    ("Ja.", "length_ratio"),
]


def _plant(cache, translator, target, decoding, pairs):
    cfg = translator.config
    cache.put_many(
        {
            cache_key(cfg.model, cfg.revision, "en", target, decoding.as_key(), src): out
            for src, out in pairs
        }
    )


def _planted_examples():
    return [SeedExample(p, r) for (p, _), r in zip(GOOD, RESPONSES, strict=True)]


def _plant_all(cache, translator):
    pairs = GOOD + [(r, out) for r, (out, _) in zip(RESPONSES, PLANTED, strict=True)]
    _plant(cache, translator, "de", translator.config.decoding, pairs)


def test_quality_filter_drops_planted_bad_translations(make_translator, tmp_path):
    translator = make_translator(quality_check="drop", retry_failed=False)
    cache = FileTranslationCache(tmp_path)
    _plant_all(cache, translator)
    result = translate_seed(_planted_examples(), "de", translator, cache=cache)
    report = result.report
    assert report["model_calls"] == 0  # every output came from the planted cache
    assert report["dropped_by_reason"] == {
        "empty": 1,
        "repetition": 1,
        "length_ratio": 1,
        "wrong_language": 1,
    }
    assert report["n_kept"] == 1 and report["n_dropped"] == 4
    assert result.quadruples[0].x_tgt == GOOD[0][1]
    assert result.quadruples[0].y_tgt == PLANTED[0][0]
    assert [f["index"] for f in report["failures"]] == [1, 2, 3, 4]
    assert all(f["field"] == "response" for f in report["failures"])


def test_failing_examples_are_retried_once_with_other_decoding(make_translator, tmp_path):
    translator = make_translator(quality_check="drop", retry_failed=True)
    cache = FileTranslationCache(tmp_path)
    _plant_all(cache, translator)
    retry = translator.config.retry_decoding
    # the retry fixes the English copy; the other three stay broken
    fixed = "Bring feste Schuhe, eine warme Jacke, genug Wasser und eine Karte der Gegend mit."
    retry_pairs = GOOD + [
        (RESPONSES[1], fixed),
        (RESPONSES[2], PLANTED[2][0]),
        (RESPONSES[3], ""),
        (RESPONSES[4], "Ja."),
    ]
    _plant(cache, translator, "de", retry, retry_pairs)
    result = translate_seed(_planted_examples(), "de", translator, cache=cache)
    report = result.report
    assert report["model_calls"] == 0
    assert report["retried"] == 4 and report["recovered_by_retry"] == 1
    assert report["n_kept"] == 2 and sum(report["dropped_by_reason"].values()) == 3
    assert report["dropped_by_reason"]["wrong_language"] == 0
    assert [q.y_tgt for q in result.quadruples] == [PLANTED[0][0], fixed]


def test_report_mode_keeps_but_counts(make_translator, tmp_path):
    translator = make_translator(quality_check="report")
    cache = FileTranslationCache(tmp_path)
    _plant_all(cache, translator)
    report = translate_seed(_planted_examples(), "de", translator, cache=cache).report
    assert report["retried"] == 0 and report["model_calls"] == 0
    # flagged examples stay; an empty translation is never kept, whatever the mode
    assert report["n_kept"] == 4
    assert report["flagged_by_reason"] == {
        "empty": 0,
        "repetition": 1,
        "length_ratio": 1,
        "wrong_language": 1,
    }
    assert report["dropped_by_reason"] == {
        "empty": 1,
        "repetition": 0,
        "length_ratio": 0,
        "wrong_language": 0,
    }


def test_off_mode_checks_nothing_but_emptiness(make_translator, tmp_path):
    translator = make_translator(quality_check="off")
    cache = FileTranslationCache(tmp_path)
    _plant_all(cache, translator)
    result = translate_seed(_planted_examples(), "de", translator, cache=cache)
    assert result.report["n_kept"] == 4 and result.report["language_id_checked"] is None
    assert result.report["dropped_by_reason"]["empty"] == 1
    assert sum(result.report["flagged_by_reason"].values()) == 0
    assert all(q.x_tgt and q.y_tgt for q in result.quadruples)


def test_stop_hook_keeps_finished_batches_for_resume(make_translator, tmp_path):
    translator = make_translator(batch_tokens=64)
    examples = _examples(2)
    cache = FileTranslationCache(tmp_path)
    events: list[dict] = []
    calls = {"n": 0}

    def stop_after_two_batches() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Stopped):
        translate_seed(
            examples,
            "de",
            translator,
            cache=cache,
            progress=events.append,
            should_stop=stop_after_two_batches,
        )
    assert translator.model_calls == 2
    saved = len(cache)
    assert saved == events[-1]["step"] > 0
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and all(e["stage"] == "translating" for e in events)

    # batch size is not part of the cache key: a roomier worker resumes the job
    resumed = translate_seed(examples, "de", make_translator(), cache=cache)
    assert resumed.report["cache_hits"] == saved
    assert resumed.report["n_kept"] == 2


def test_bad_targets_fail_before_any_work(make_translator):
    translator = make_translator()
    with pytest.raises(CloError, match="source language"):
        translate_seed(_examples(1), "en", translator)
    with pytest.raises(CloError, match="unknown language"):
        translate_seed(_examples(1), "xx", translator)
    assert translator.model_calls == 0
