"""Split long (markdown-ish) texts into translatable sentences and put them back together.

Seq2seq MT models degrade past a couple hundred tokens, so a text is cut into lines, a line
into a structural prefix (list marker, heading, quote, table pipes) and sentences. Fenced code
blocks, inline code, URLs, blank lines and whitespace are kept byte-for-byte; only sentences
reach the model. Inline code and URLs inside a sentence are replaced by numbered placeholders
and restored afterwards; digits must survive too. A sentence whose translation lost a
placeholder or a number falls back to translating the text between those tokens separately.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

# An opening fence: up to 3 spaces, then ``` or ~~~ (3+), then an optional info string.
_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# What starts a line and is structure, not prose: indentation, heading hashes, quote marks,
# a list marker ("- ", "* ", "+ ", "1. ", "1) ") and a task box.
_LINE_PREFIX = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]+|>[ \t]?)*(?:[-*+][ \t]+|\d{1,3}[.)][ \t]+)?(?:\[[ xX]\][ \t]+)?"
)
_TABLE_ROW = re.compile(r"^[ \t]*\|")
_INLINE_CODE = r"(`+)(?:(?!\1).)+?\1"
_URL = r"(?:https?://|ftp://|www\.)[^\s<>()\[\]`\"']*[^\s<>()\[\]`\"'.,;:!?]"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_PROTECTED = re.compile(f"{_INLINE_CODE}|{_URL}|{_EMAIL}")
_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_PLACEHOLDER = re.compile(r"\[(\d+)\]")
# A sentence ends at . ! ? … (optionally closed by quotes/brackets) before whitespace, or right
# after a CJK full stop / exclamation / question mark.
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+[\"'”’）」』]*)")
_ABBREVIATIONS = frozenset(
    "e.g i.e etc vs mr mrs ms dr prof st jr sr no fig approx cf al inc ltd co".split()
)


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def clean_output(masked: str, output: str) -> str:
    """One line of model output: newlines folded (the line structure is ours) and backticks or
    ~~~ the model invented removed, since they would open code spans or fences on re-render."""
    if "`" not in masked:
        output = output.replace("`", "")
    if "~~~" not in masked:
        output = re.sub(r"~{3,}", "", output)
    return " ".join(output.split())


def digit_runs(text: str) -> Counter[str]:
    """Multiset of digit sequences: "2.1" and a localised "2,1" give the same runs."""
    return Counter(_DIGITS.findall(text))


@dataclass(frozen=True)
class Segment:
    """One sentence sent to the model, with the tokens that must come back unchanged."""

    source: str
    masked: str  # what the model sees: inline code / URLs replaced by [1], [2]...
    placeholders: tuple[tuple[str, str], ...] = ()  # (placeholder, original text)
    direct: bool = True  # False: skip the masked attempt, translate fallback() parts only

    def restore(self, output: str) -> str | None:
        """The translation with placeholders restored, or None if a protected token was lost."""
        output = clean_output(self.masked, output)
        for placeholder, _ in self.placeholders:
            if output.count(placeholder) != 1:
                return None
        bare = _PLACEHOLDER.sub(" ", output) if self.placeholders else output
        if digit_runs(self.masked_without_placeholders()) - digit_runs(bare):
            return None  # a number went missing or was changed
        for placeholder, original in self.placeholders:
            output = output.replace(placeholder, original)
        return output

    def masked_without_placeholders(self) -> str:
        return _PLACEHOLDER.sub(" ", self.masked) if self.placeholders else self.masked

    def fallback(self) -> list[str | Segment]:
        """Protected tokens and numbers kept verbatim, only the prose between them translated."""
        parts: list[str | Segment] = []
        pos = 0
        spans = sorted(
            [m.span() for m in _PROTECTED.finditer(self.source)]
            + [m.span() for m in _NUMBER.finditer(self.source)]
        )
        for start, end in spans:
            if start < pos:  # a number inside a URL or code span: already covered
                continue
            parts.extend(_prose(self.source[pos:start]))
            parts.append(self.source[start:end])
            pos = end
        parts.extend(_prose(self.source[pos:]))
        return parts


def _prose(text: str) -> list[str | Segment]:
    """Literal whitespace around a plain segment (no protected tokens inside)."""
    if not _has_letters(text):
        return [text] if text else []
    core = text.strip()
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    return [p for p in (lead, Segment(core, core), trail) if p != ""]


def _make_segment(sentence: str) -> str | Segment:
    """A Segment for prose; a literal for text without letters outside code/URLs."""
    matches = list(_PROTECTED.finditer(sentence))
    outside = _PROTECTED.sub(" ", sentence)
    if not _has_letters(outside):
        return sentence
    if not matches:
        return Segment(sentence, sentence)
    if _PLACEHOLDER.search(sentence):
        # the text already contains "[n]": placeholders would be ambiguous, so the model
        # never sees them and the sentence goes straight to the fallback split.
        return Segment(sentence, sentence, direct=False)
    masked, placeholders, pos = [], [], 0
    for i, m in enumerate(matches, start=1):
        placeholder = f"[{i}]"
        masked.append(sentence[pos : m.start()])
        masked.append(placeholder)
        placeholders.append((placeholder, m.group(0)))
        pos = m.end()
    masked.append(sentence[pos:])
    return Segment(sentence, "".join(masked), tuple(placeholders))


def _protected_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _PROTECTED.finditer(text)]


def _is_abbreviation(text: str, end: int) -> bool:
    """Whether the '.' ending at `end` closes an abbreviation ("e.g.", "Dr.") or an initial."""
    word = re.search(r"([\w.]+)\.$", text[:end])
    if word is None:
        return False
    token = word.group(1).lower()
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def split_sentences(text: str) -> list[str]:
    """Sentences of one line, whitespace between them included in the preceding one."""
    spans = _protected_spans(text)
    cuts = []
    for m in _SENTENCE_END.finditer(text):
        end = m.end()
        if any(s <= m.start() < e for s, e in spans):
            continue  # a dot inside a URL or code span
        if text[m.start()] == "." and _is_abbreviation(text, m.start() + 1):
            continue
        nxt = text[end:].lstrip()
        if nxt and nxt[0].islower():
            continue  # "3 p.m. today": a lowercase word rarely starts a sentence
        cuts.append(end)
    out, pos = [], 0
    for cut in cuts:
        ws_end = cut + len(text[cut:]) - len(text[cut:].lstrip())
        out.append(text[pos:ws_end])
        pos = ws_end
    if pos < len(text):
        out.append(text[pos:])
    return [s for s in out if s]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut an over-long sentence at clause punctuation, then between words."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for clause in re.split(r"(?<=[,;:，；：])(?=\s)", sentence):
        if current and len(current) + len(clause) > max_chars:
            pieces.append(current)
            current = ""
        current += clause
    pieces.append(current)
    out: list[str] = []
    for piece in pieces:
        while len(piece) > max_chars:
            cut = piece.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars
            out.append(piece[:cut])
            piece = piece[cut:]
        out.append(piece)
    return [p for p in out if p]


def _split_content(content: str, max_chars: int) -> list[str | Segment]:
    """Prose of one line -> literal whitespace and Segments."""
    parts: list[str | Segment] = []
    for sentence in split_sentences(content):
        for chunk in _split_long(sentence, max_chars):
            lead = chunk[: len(chunk) - len(chunk.lstrip())]
            trail = chunk[len(chunk.rstrip()) :]
            core = chunk.strip()
            if lead:
                parts.append(lead)
            if core:
                parts.append(_make_segment(core))
            if trail:
                parts.append(trail)
    return parts


def _split_line(line: str, max_chars: int) -> list[str | Segment]:
    body = line.rstrip("\r\n")
    ending = line[len(body) :]
    parts: list[str | Segment] = []
    if _TABLE_ROW.match(body):
        # table: pipes and alignment rows verbatim, each cell translated on its own
        for cell in re.split(r"(\|)", body):
            parts.extend(_split_content(cell, max_chars) if _has_letters(cell) else [cell])
    else:
        prefix = _LINE_PREFIX.match(body)
        cut = prefix.end() if prefix else 0
        if cut:
            parts.append(body[:cut])
        parts.extend(_split_content(body[cut:], max_chars))
    if ending:
        parts.append(ending)
    return parts


def split_text(text: str, max_segment_chars: int = 400) -> list[str | Segment]:
    """The text as literal strings (kept as-is) and Segments (translated), in order."""
    parts: list[str | Segment] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        if fence is not None:
            parts.append(line)  # inside a fenced code block: verbatim
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
            continue
        opening = _FENCE_OPEN.match(line)
        if opening:
            fence = opening.group(1)
            parts.append(line)
            continue
        parts.extend(_split_line(line, max_segment_chars))
    # merge neighbouring literals: fewer, longer pieces
    merged: list[str | Segment] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


def render(parts: list[str | Segment], translated: Mapping[Segment, str]) -> str:
    """Join literals and the translations of the segments back into one text."""
    return "".join(p if isinstance(p, str) else translated[p] for p in parts)


def segments_of(parts: list[str | Segment]) -> list[Segment]:
    return [p for p in parts if isinstance(p, Segment)]
