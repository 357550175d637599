"""Seed JSONL loading/validation and the shipped built-in data."""

import json

import pytest
from lingua import Language, LanguageDetectorBuilder

from clo.errors import CloError
from clo.languages import UnknownLanguageError
from clo.seed import (
    SeedDataError,
    SeedExample,
    builtin_parallel,
    builtin_parallel_languages,
    builtin_seed,
    load_jsonl,
    load_parallel_jsonl,
    seed_hash,
    validate_jsonl_lines,
)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def chat(*messages):
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in messages]})


def test_loads_both_formats_skipping_blank_lines(tmp_path):
    path = write_lines(
        tmp_path / "seed.jsonl",
        [
            json.dumps({"prompt": " Hi there ", "response": "Hello!", "id": 7}),
            "",
            "   ",
            chat(("user", "What is 2+2?"), ("assistant", "4")),
            chat(("system", "Be brief."), ("user", "Name a colour."), ("assistant", "Blue.")),
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "Say hi"}]},
                        {"role": "assistant", "content": "Hi"},
                    ]
                }
            ),
        ],
    )
    assert load_jsonl(path) == [
        SeedExample("Hi there", "Hello!"),
        SeedExample("What is 2+2?", "4"),
        SeedExample("Name a colour.", "Blue."),  # the system message is ignored
        SeedExample("Say hi", "Hi"),
    ]


def test_reports_every_bad_line_with_its_field(tmp_path):
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            json.dumps({"prompt": "ok", "response": "fine"}),
            json.dumps({"prompt": "no response"}),
            "{not json",
            json.dumps({"prompt": "", "response": "x"}),
            json.dumps({"prompt": "p", "response": 3}),
            json.dumps(["a list"]),
            chat(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
            chat(("assistant", "b"), ("user", "a")),
            json.dumps({"text": "wrong keys"}),
        ],
    )
    with pytest.raises(SeedDataError) as info:
        load_jsonl(path)
    errors = {(e.line, e.field) for e in info.value.errors}
    assert errors == {
        (2, "response"),
        (3, None),
        (4, "prompt"),
        (5, "response"),
        (6, None),
        (7, "messages"),
        (8, "messages[0].role"),
        (9, "prompt"),
    }
    assert info.value.error_count == 8
    multi_turn = next(e for e in info.value.errors if e.line == 7)
    assert "multi-turn" in multi_turn.message
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_validate_stream_counts_and_caps_errors():
    good = json.dumps({"prompt": "p", "response": "r"}).encode()
    lines = [good + b"\n"] * 3 + [b"{oops\n"] * 60 + [b"\xff\xfe bad utf8\n"]
    report = validate_jsonl_lines(iter(lines), max_errors=50)
    assert report.count == 3
    assert report.error_count == 61
    assert len(report.errors) == 50
    assert report.errors[0].line == 4 and not report.ok
    utf8 = validate_jsonl_lines([b"\xff\xfe\n"])
    assert "UTF-8" in utf8.errors[0].message
    assert validate_jsonl_lines([b"\xef\xbb\xbf" + good]).ok  # a leading BOM is fine


def test_empty_and_missing_files_are_clear_errors(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", ["", ""])
    with pytest.raises(SeedDataError, match="no examples"):
        load_jsonl(empty)
    with pytest.raises(CloError, match="not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_seed_hash_is_canonical_and_order_sensitive():
    a, b = SeedExample("p1", "r1"), SeedExample("p2", "r2")
    assert seed_hash([a, b]) == seed_hash([SeedExample("p1", "r1"), SeedExample("p2", "r2")])
    assert seed_hash([a, b]) != seed_hash([b, a])
    assert seed_hash([a]) != seed_hash([SeedExample("p1", "r1 ")])
    assert len(seed_hash([a])) == 64


def test_builtin_seed_is_large_unique_and_well_formed():
    seed = builtin_seed()
    assert len(seed) >= 220
    assert len({e.prompt for e in seed}) == len(seed)
    assert len({e.response for e in seed}) == len(seed)
    for e in seed:
        assert 5 <= len(e.prompt.split()) <= 25, e.prompt
        assert 1 <= len(e.response.split()) <= 120, e.response


def test_builtin_parallel_german_matches_the_seed():
    quads = builtin_parallel("de")
    assert len(quads) >= 120
    assert builtin_parallel("German") == quads
    seed = {e.prompt: e.response for e in builtin_seed()}
    for q in quads:
        assert seed[q.x_en] == q.y_en  # the English side is the built-in seed verbatim
        assert q.x_tgt != q.x_en and q.y_tgt != q.y_en
    assert len({q.x_tgt for q in quads}) == len(quads)


def test_builtin_parallel_german_side_is_german():
    # Guards translation quality: among all of lingua's languages it must see German, not
    # English or a neighbour. Low-accuracy mode (trigrams) is reliable for 5+ words and fast.
    detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    texts = [t for q in builtin_parallel("de") for t in (q.x_tgt, q.y_tgt)]
    long_texts = [t for t in texts if len(t.split()) >= 5]
    assert len(long_texts) >= 200
    results = [detector.detect_language_of(t) for t in long_texts]
    german = sum(r == Language.GERMAN for r in results)
    assert german / len(long_texts) >= 0.95


def test_builtin_parallel_unknown_language_names_what_ships():
    assert "de" in builtin_parallel_languages()
    with pytest.raises(CloError, match="ships for: .*de") as info:
        builtin_parallel("sw")
    assert "Swahili" in str(info.value)
    with pytest.raises(UnknownLanguageError):
        builtin_parallel("klingon")


def test_user_parallel_jsonl(tmp_path):
    path = write_lines(
        tmp_path / "parallel.jsonl",
        [
            json.dumps(
                {
                    "prompt": "Hello?",
                    "response": "Hi.",
                    "prompt_translated": "Hallo?",
                    "response_translated": "Hallo.",
                }
            ),
            json.dumps({"x_en": "a", "y_en": "b", "x_tgt": "c", "y_tgt": "d"}),
        ],
    )
    quads = load_parallel_jsonl(path)
    assert [q.to_dict() for q in quads] == [
        {"x_en": "Hello?", "y_en": "Hi.", "x_tgt": "Hallo?", "y_tgt": "Hallo."},
        {"x_en": "a", "y_en": "b", "x_tgt": "c", "y_tgt": "d"},
    ]
    bad = write_lines(tmp_path / "bad.jsonl", [json.dumps({"prompt": "p", "response": "r"})])
    with pytest.raises(SeedDataError) as info:
        load_parallel_jsonl(bad)
    assert info.value.errors[0].field == "prompt_translated"
