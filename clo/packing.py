"""Each prompt once: a prompt and both of its responses packed in one row.

The four sequences of a CLO example share two prompts: (x_en: y_en, y_tgt) and
(x_tgt: y_tgt, y_en). Packed, a row is `prompt | first response | second response`, and a
4-D attention mask lets each response see only its prompt and itself (causally), with
position ids restarting at the prompt's length for the second response. The prompt is then
encoded once instead of twice, and a row is as long as its prompt plus both responses
instead of two rows as long as the longer of the two.

What a token sees and where it sits is exactly what it sees in its own unpacked sequence,
so the log-probs are the same up to float rounding (fp32: 1e-5, tests/clo/test_packing.py).
The first token of the second response is predicted from the prompt's last hidden state,
like the first of the first response.

Only attention implementations that take a custom 4-D mask as given do this: SDPA (a
boolean mask, True where a token may attend) and eager (an additive float mask), and only
architectures whose masks and positions come from that mask and `position_ids` alone
(rotary models without sliding windows or ALiBi). Anything else is scored unpacked
(`packing_unsupported` says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from clo.encoding import EN_EN, EN_TGT, TGT_EN, TGT_TGT, EncodedSequence
from clo.logit_transform import model_transform
from clo.logprobs import DEFAULT_CHUNK_TOKENS, _decoder_and_head, token_logprobs
from clo.packed_attention import PACKED_SDPA, routed

# The columns of a quadruple that share a prompt, in the order the rows give them back.
SHARED_PROMPT_PAIRS = ((EN_EN, EN_TGT), (TGT_TGT, TGT_EN))
MASKED_ATTENTION = ("sdpa", "eager")
# model_type values whose decoder builds its masks with transformers' create_causal_mask
# (which returns a 4-D mask as given) and takes positions from position_ids (rotary).
# Checked by tests/clo/test_packing.py; others fall back to unpacked rows.
PACKABLE_MODEL_TYPES = frozenset(
    {"llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "olmo2", "granite", "cohere"}
)


@dataclass(frozen=True)
class PackedRow:
    """prompt + first response + second response; lengths of the three parts."""

    input_ids: tuple[int, ...]
    prompt_len: int
    first_len: int
    second_len: int


def pack_pair(first: EncodedSequence, second: EncodedSequence) -> PackedRow | None:
    """The two sequences in one row, or None when their prompts differ."""
    p = first.prompt_len
    if second.prompt_len != p or first.input_ids[:p] != second.input_ids[:p]:
        return None
    return PackedRow(
        first.input_ids + second.input_ids[p:], p, first.response_len, second.response_len
    )


def pack_examples(sequences: Sequence[EncodedSequence]) -> list[PackedRow]:
    """Rows of the quadruples laid out one after another (4 sequences each, clo.encoding
    order): two rows per quadruple, giving back the sequences in the same order."""
    if len(sequences) % 4:
        raise ValueError(f"packing takes whole quadruples, got {len(sequences)} sequences")
    rows = []
    for start in range(0, len(sequences), 4):
        quad = sequences[start : start + 4]
        for a, b in SHARED_PROMPT_PAIRS:
            row = pack_pair(quad[a], quad[b])
            if row is None:
                raise ValueError(f"sequences {start + a} and {start + b} do not share a prompt")
            rows.append(row)
    return rows


def packable(encoded: Sequence[Sequence[EncodedSequence]]) -> bool:
    """Every example has four sequences whose pairs share their prompts."""
    return all(
        len(ex) == 4 and all(pack_pair(ex[a], ex[b]) is not None for a, b in SHARED_PROMPT_PAIRS)
        for ex in encoded
    )


def packing_unsupported(model: Any) -> str | None:
    """Why `model` cannot score packed rows, or None when it can."""
    config = getattr(model, "config", None)
    if config is None:
        return f"{type(model).__name__} has no config"
    impl = getattr(config, "_attn_implementation", None)
    if impl not in MASKED_ATTENTION:
        return f"attention implementation {impl!r} does not take custom 4-D masks"
    model_type = getattr(config, "model_type", None)
    if model_type not in PACKABLE_MODEL_TYPES:
        return f"model type {model_type!r} is not known to honour a custom 4-D mask"
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        return f"sliding-window attention ({window}) would be bypassed by a custom mask"
    return None


def unpacked_reason(
    model: Any, encoded: Sequence[Sequence[EncodedSequence]], wrapped: bool
) -> str | None:
    """Why a run scores its prompts unpacked, or None when it packs them. `wrapped`: the
    steps forward a distributed wrapper (DDP / FSDP2), which acts only through
    SequenceScorer's forward and so takes unpacked rows."""
    why = packing_unsupported(model)
    if why is None and wrapped:
        why = "the distributed wrappers forward unpacked rows"
    if why is None and not packable(encoded):
        why = "an example's sequences do not share their prompts"
    return why


@dataclass
class PackedBatch:
    """Right-padded packed rows with their mask, positions and the tokens that count."""

    input_ids: torch.Tensor  # [B, W]
    position_ids: torch.Tensor  # [B, W]
    allowed: torch.Tensor  # [B, 1, W, W] bool: query may attend key
    source: torch.Tensor  # [T] flat index (row * W + col) of the hidden state predicting...
    targets: torch.Tensor  # [T] ...this token id
    sequence: torch.Tensor  # [T] which of the 2B sequences the token belongs to


def collate_packed(rows: Sequence[PackedRow], pad_id: int) -> PackedBatch:
    """Pad packed rows on the right; padding attends only to itself (no empty softmax row)."""
    width = max(len(r.input_ids) for r in rows)
    n_rows = len(rows)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    pos = torch.zeros((n_rows, width), dtype=torch.long)
    allowed = torch.zeros((n_rows, width, width), dtype=torch.bool)
    causal = torch.ones(width, width, dtype=torch.bool).tril_()
    source, targets, sequence = [], [], []
    for r, row in enumerate(rows):
        p, a, b = row.prompt_len, row.first_len, row.second_len
        n = p + a + b
        ids[r, :n] = torch.tensor(row.input_ids, dtype=torch.long)
        pos[r, : p + a] = torch.arange(p + a)
        pos[r, p + a : n] = torch.arange(p, p + b)
        allowed[r, :n, :n] = causal[:n, :n]
        allowed[r, p + a : n, p : p + a] = False  # the second response never sees the first
        pad = torch.arange(n, width)
        allowed[r, pad, pad] = True
        base = r * width
        # first response: positions p-1 .. p+a-2 predict tokens p .. p+a-1
        src_first = torch.arange(p - 1, p + a - 1)
        # second: the prompt's last position predicts its first token, then its own tokens
        src_second = torch.cat([torch.tensor([p - 1]), torch.arange(p + a, n - 1)])
        source += [base + src_first, base + src_second]
        targets += [ids[r, p : p + a], ids[r, p + a : n]]
        sequence += [torch.full((a,), 2 * r), torch.full((b,), 2 * r + 1)]
    return PackedBatch(
        input_ids=ids,
        position_ids=pos,
        allowed=allowed[:, None],
        source=torch.cat(source),
        targets=torch.cat(targets),
        sequence=torch.cat(sequence),
    )


def attention_mask_for(model: Any, allowed: torch.Tensor) -> torch.Tensor:
    """The 4-D mask in the form the model's attention takes: SDPA a boolean one, eager an
    additive fp32 one (0 where allowed, fp32's minimum elsewhere; eager's softmax is fp32)."""
    if model.config._attn_implementation in ("sdpa", PACKED_SDPA):
        return allowed
    mask = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(torch.float32).min)


def packed_logprobs(
    model: Any,
    rows: Sequence[PackedRow],
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    pad_id: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs and token counts [2·len(rows)], first and second response
    of each row in turn (the unpacked sequences' order)."""
    decoder, head = _decoder_and_head(model)
    transform = model_transform(model, decoder, head)
    device = next(model.parameters()).device
    batch = collate_packed(rows, pad_id)
    mask = attention_mask_for(model, batch.allowed.to(device))
    # SDPA models attend over each row's live blocks (clo.packed_attention); a caller that
    # backpropagates holds `routed` over its backward too (checkpointing re-runs forwards)
    with routed(model) as live_blocks:
        layout = [(r.prompt_len, r.first_len, r.second_len) for r in rows]
        hidden = decoder(
            input_ids=batch.input_ids.to(device),
            attention_mask=mask,
            position_ids=batch.position_ids.to(device),
            use_cache=False,
            **({"packed_layout": layout} if live_blocks else {}),
        ).last_hidden_state
    h = hidden.reshape(-1, hidden.shape[-1])[batch.source.to(device)]
    token_logps = token_logprobs(head, h, batch.targets.to(device), chunk_tokens, transform)
    seq = batch.sequence.to(device)
    sums = torch.zeros(2 * len(rows), dtype=torch.float32, device=device)
    sums = sums.index_add(0, seq, token_logps)
    counts = torch.bincount(seq, minlength=2 * len(rows))
    return sums, counts
