"""Turn (prompt, response) text into token ids with the prompt masked from every loss.

Prompt formatting:
- a tokenizer with a chat template renders the prompt as one user turn followed by the
  generation prompt (`apply_chat_template(..., add_generation_prompt=True)`), exactly what
  the model sees at inference;
- a base model without one gets `DEFAULT_TEMPLATE` below (a plain "### Question / ### Answer"
  layout, used by many base-model instruction-tuning recipes), with the tokenizer's BOS
  token in front when it has one.
The response is followed by the EOS token so the model also learns to stop.

Truncation policy (per sequence):
1. the prompt *content* keeps at most what fits in `max_prompt_length` tokens together with
   the template around it, cut from the LEFT so the end of the question survives; the
   template's own tokens (role headers, generation prompt) are never cut;
2. the response is then cut from the right to fit `max_length`.
A prompt is never cut to nothing: if the template alone does not leave room for at least
`MIN_PROMPT_CONTENT_TOKENS` content tokens, encoding fails with a CloError naming the option.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from clo.errors import CloError
from clo.pairs import Quadruple

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "### Question:\n{prompt}\n\n### Answer:\n"
MIN_PROMPT_CONTENT_TOKENS = 4
_SLOT = "\u2063CLO_PROMPT_SLOT\u2063"  # invisible separator: never appears in real prompts

# The four sequences of one quadruple, in the order every batch and reference tensor uses.
SEQUENCE_NAMES = ("en_en", "en_tgt", "tgt_tgt", "tgt_en")
EN_EN, EN_TGT, TGT_TGT, TGT_EN = range(4)


@dataclass(frozen=True)
class EncodedSequence:
    """Token ids of prompt+response; the first `prompt_len` ids are masked from the loss."""

    input_ids: tuple[int, ...]
    prompt_len: int

    @property
    def response_len(self) -> int:
        return len(self.input_ids) - self.prompt_len


@dataclass
class TruncationReport:
    """How many sequences (and examples) the truncation policy touched."""

    sequences: int = 0
    prompts_truncated: int = 0
    responses_truncated: int = 0
    examples_truncated: int = 0
    examples: int = 0
    prompt_tokens_dropped: int = 0
    response_tokens_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class PromptFormatter:
    """Splits the rendered template into the text before and after the prompt content."""

    prefix_ids: list[int]
    suffix_ids: list[int]
    template: str = field(default="")

    @property
    def overhead(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)


def template_text(tokenizer: Any) -> str:
    """The prompt layout used for this tokenizer (its chat template or our default)."""
    if getattr(tokenizer, "chat_template", None):
        rendered: str = tokenizer.apply_chat_template(
            [{"role": "user", "content": _SLOT}], tokenize=False, add_generation_prompt=True
        )
        return rendered
    bos = tokenizer.bos_token or ""
    return bos + DEFAULT_TEMPLATE.format(prompt=_SLOT)


def prompt_formatter(tokenizer: Any) -> PromptFormatter:
    """Tokenize the template once; prompts are then encoded as prefix + content + suffix."""
    text = template_text(tokenizer)
    if text.count(_SLOT) != 1:
        raise CloError("the tokenizer's chat template must place the user message exactly once")
    before, after = text.split(_SLOT)
    return PromptFormatter(
        prefix_ids=_ids(tokenizer, before), suffix_ids=_ids(tokenizer, after), template=text
    )


def _ids(tokenizer: Any, text: str) -> list[int]:
    # Special tokens written in the template text (e.g. <|im_start|>) are parsed as such;
    # add_special_tokens=False because the template already carries BOS where one is wanted.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_pair(
    tokenizer: Any,
    fmt: PromptFormatter,
    prompt: str,
    response: str,
    max_length: int,
    max_prompt_length: int,
    report: TruncationReport | None = None,
) -> EncodedSequence:
    """Encode one (prompt, response) under the truncation policy of this module."""
    budget = max_prompt_length - fmt.overhead
    if budget < MIN_PROMPT_CONTENT_TOKENS:
        raise CloError(
            f"max_prompt_length={max_prompt_length} leaves {budget} tokens for the prompt after "
            f"the {fmt.overhead}-token template; raise max_prompt_length to at least "
            f"{fmt.overhead + MIN_PROMPT_CONTENT_TOKENS}"
        )
    content = _ids(tokenizer, prompt)
    if not content:
        raise CloError("prompt is empty after tokenization")
    prompt_cut = max(0, len(content) - budget)
    content = content[prompt_cut:]  # keep the END of the question
    prompt_ids = fmt.prefix_ids + content + fmt.suffix_ids

    response_ids = _ids(tokenizer, response)
    if tokenizer.eos_token_id is not None:
        response_ids.append(tokenizer.eos_token_id)
    if not response_ids:
        raise CloError("response is empty after tokenization and the tokenizer has no EOS token")
    room = max_length - len(prompt_ids)  # >= 1 because max_prompt_length < max_length
    response_cut = max(0, len(response_ids) - room)
    if response_cut:
        response_ids = response_ids[:room]

    if report is not None:
        report.sequences += 1
        report.prompts_truncated += int(prompt_cut > 0)
        report.responses_truncated += int(response_cut > 0)
        report.prompt_tokens_dropped += prompt_cut
        report.response_tokens_dropped += response_cut
    return EncodedSequence(tuple(prompt_ids + response_ids), len(prompt_ids))


def quad_sequences(q: Quadruple) -> tuple[tuple[str, str], ...]:
    """The four (prompt, response) texts of a quadruple, in SEQUENCE_NAMES order."""
    return ((q.x_en, q.y_en), (q.x_en, q.y_tgt), (q.x_tgt, q.y_tgt), (q.x_tgt, q.y_en))


def encode_quads(
    tokenizer: Any, quads: Sequence[Quadruple], max_length: int, max_prompt_length: int
) -> tuple[list[tuple[EncodedSequence, ...]], TruncationReport]:
    """Encode every quadruple into its four sequences; returns them and a truncation report."""
    if max_prompt_length >= max_length:
        raise CloError("max_prompt_length must be smaller than max_length")
    fmt = prompt_formatter(tokenizer)
    report = TruncationReport()
    out = []
    for i, q in enumerate(quads):
        before = report.prompts_truncated + report.responses_truncated
        try:
            seqs = tuple(
                encode_pair(tokenizer, fmt, p, r, max_length, max_prompt_length, report)
                for p, r in quad_sequences(q)
            )
        except CloError as exc:
            raise CloError(f"example {i}: {exc}") from exc
        report.examples += 1
        report.examples_truncated += int(
            report.prompts_truncated + report.responses_truncated > before
        )
        out.append(seqs)
    if report.examples_truncated:
        logger.warning(
            "truncated %d of %d examples (max_length=%d, max_prompt_length=%d)",
            report.examples_truncated,
            report.examples,
            max_length,
            max_prompt_length,
        )
    return out, report


def encoding_fingerprint(encoded: Sequence[tuple[EncodedSequence, ...]]) -> str:
    """sha256 over all token ids and prompt lengths: changes with tokenizer, data or template."""
    h = hashlib.sha256()
    for seqs in encoded:
        for s in seqs:
            h.update(f"{s.prompt_len}:{','.join(map(str, s.input_ids))};".encode())
    return h.hexdigest()


@dataclass
class Batch:
    """Right-padded token batch; `response_mask` marks tokens that count in losses."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            *(t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask))
        )

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(sequences: Sequence[EncodedSequence], pad_id: int) -> Batch:
    """Pad sequences on the right into one batch (positions stay 0..len-1 for real tokens)."""
    width = max(len(s.input_ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(sequences), width), dtype=torch.long)
    resp = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, s in enumerate(sequences):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids, dtype=torch.long)
        attn[row, :n] = 1
        resp[row, s.prompt_len : n] = True
    return Batch(ids, attn, resp)


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the pad token, else EOS (padding is masked out anyway)."""
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pid is None:
        raise CloError("tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token")
    return int(pid)
