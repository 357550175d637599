"""Splitting texts into sentences and re-joining them around code, lists, URLs and numbers."""

from clo.translate.segment import Segment, render, segments_of, split_sentences, split_text

DOC = """# Boiling eggs

Bring water to a boil. Then lower the egg in, e.g. with a spoon!

- Cook soft eggs for 6 minutes.
* Cook hard eggs for 10 minutes.
1. See https://example.com/eggs?size=L for sizes.
   2) Run `python timer.py --minutes 6` to time it.

```python
def boil(egg):
    return egg.cook(minutes=6)  # Do not translate. Ever.
```

| Size | Minutes |
|------|---------|
| Large egg | 7 |
> Enjoy your breakfast.
"""


def _mark(parts):
    """Render with every segment replaced by a visibly different text."""
    return render(parts, {s: f"<{s.source.upper()}>" for s in segments_of(parts)})


def test_structure_and_code_survive_rendering():
    out = _mark(split_text(DOC))
    fence_start = DOC.index("```python")
    fence_end = DOC.index("```\n", fence_start + 3) + 4
    assert DOC[fence_start:fence_end] in out  # code block byte-for-byte
    src_lines, out_lines = DOC.splitlines(), out.splitlines()
    assert len(src_lines) == len(out_lines)
    for src, dst in zip(src_lines, out_lines, strict=True):
        assert (src == "") == (dst == "")  # blank lines stay where they were
        for marker in ("# ", "- ", "* ", "1. ", "   2) ", "| ", "> "):
            if src.startswith(marker):
                assert dst.startswith(marker)
    assert "<BRING WATER TO A BOIL.> <THEN LOWER THE EGG IN, E.G. WITH A SPOON!>" in out
    assert "|------|---------|" in out and "| 7 |" in out


def test_placeholders_hide_code_and_urls_from_the_model():
    segs = segments_of(split_text(DOC))
    masked = " ".join(s.masked for s in segs)
    assert "https://" not in masked and "`" not in masked and "def boil" not in masked
    url_seg = next(s for s in segs if "example.com" in s.source)
    assert url_seg.masked == "See [1] for sizes."
    restored = url_seg.restore("Siehe [1] für Größen.")
    assert restored == "Siehe https://example.com/eggs?size=L für Größen."


def test_restore_rejects_lost_placeholders_and_changed_numbers():
    seg = split_text("Run `make test` 3 times before 10:30.")[0]
    assert isinstance(seg, Segment)
    assert seg.restore("Führe [1] 3 Mal vor 10.30 aus.") == "Führe `make test` 3 Mal vor 10.30 aus."
    assert seg.restore("Führe es 3 Mal vor 10:30 aus.") is None  # placeholder dropped
    assert seg.restore("Führe [1] [1] 3 Mal vor 10:30 aus.") is None  # duplicated
    assert seg.restore("Führe [1] drei Mal vor 10:30 aus.") is None  # number lost
    assert seg.restore("Führe [1] 3 Mal vor 11:30 aus.") is None  # number changed


def test_fallback_keeps_protected_tokens_and_numbers_verbatim():
    seg = split_text("Version 2.1 is at https://x.org/v2 and `pip install x` gets it.")[0]
    assert isinstance(seg, Segment)
    parts = seg.fallback()
    literal = "".join(p for p in parts if isinstance(p, str))
    assert "2.1" in literal and "https://x.org/v2" in literal and "`pip install x`" in literal
    prose = [p.source for p in segments_of(parts)]
    assert prose == ["Version", "is at", "and", "gets it."]
    assert all(p.restore("irgendwas") == "irgendwas" for p in segments_of(parts))


def test_text_with_bracket_numbers_skips_the_masked_attempt():
    seg = split_text("See [1] and https://a.org/x for details.")[0]
    assert isinstance(seg, Segment) and not seg.direct


def test_sentence_splitting():
    assert split_sentences("Dr. Smith arrived. He sat down! Did he? Yes.") == [
        "Dr. Smith arrived. ",
        "He sat down! ",
        "Did he? ",
        "Yes.",
    ]
    assert split_sentences("Open www.example.com. Then wait.") == [
        "Open www.example.com. ",
        "Then wait.",
    ]
    assert split_sentences("今天天气很好。我们去公园！") == ["今天天气很好。", "我们去公园！"]
    assert split_sentences("It costs 3.50 dollars. ok fine") == ["It costs 3.50 dollars. ok fine"]


def test_overlong_sentences_are_cut_below_the_limit():
    sentence = ", ".join(f"clause number {i} keeps going" for i in range(40)) + "."
    parts = split_text(sentence, max_segment_chars=120)
    segs = segments_of(parts)
    assert len(segs) > 5 and all(len(s.source) <= 120 for s in segs)
    assert _identity(parts) == sentence


def _identity(parts):
    return render(parts, {s: s.source for s in segments_of(parts)})


def test_identity_render_round_trips_odd_inputs():
    for text in [
        DOC,
        "",
        "\n\n",
        "no newline at end",
        "```\nunclosed fence\n- x",
        "a\r\nb\r\n",
        "   indented line.\n\ttab line.",
        "12345",
        "`only code`",
        "~~~\ncode\n~~~\nafter",
    ]:
        assert _identity(split_text(text)) == text


def test_unclosed_fence_protects_the_rest():
    text = "Intro.\n```\nstill code. Not prose.\n"
    segs = segments_of(split_text(text))
    assert [s.source for s in segs] == ["Intro."]


def test_model_invented_fences_and_newlines_are_removed():
    seg = split_text("Boil the egg.")[0]
    assert isinstance(seg, Segment)
    assert seg.restore("Koche ```das\nEi``` ~~~ .") == "Koche das Ei ."
    code_seg = split_text("Press the ` key.")[0]  # a lone backtick the model did see
    assert isinstance(code_seg, Segment) and code_seg.restore("Drücke die ` Taste.") == (
        "Drücke die ` Taste."
    )
