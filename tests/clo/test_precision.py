"""bf16 training (clo.precision): parity with fp32, fp32 masters only for what trains."""

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.config import TrainConfig
from clo.encoding import encode_quads, pad_token_id
from clo.errors import CloError, Stopped
from clo.precision import cpu_has_fast_bf16, resolve_precision
from clo.reference import compute_logps
from clo.seed import builtin_parallel
from clo.trainer import TrainingRun, run_fingerprint, train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = builtin_parallel("de")[:12]
TRAIN, HELDOUT = QUADS[:8], QUADS[8:]
STEPS = 4
# bf16 keeps 8 significant bits: unit roundoff u = 2^-8. Every matmul input is rounded to
# bf16 once (accumulation, log-softmax and the loss stay fp32), so a token's log-prob carries
# a relative error of order u, and the errors of different tokens are independent enough to
# add like a random walk: a sum over n tokens of mean size |lp| is off by about
# u * |lp| * sqrt(n). The tests allow 4 times that (and a loss, a token mean, 4u|loss|/sqrt(n)).
U_BF16 = 2.0**-8
SIGMAS = 4.0


def config(precision: str, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        max_steps=STEPS,
        batch_size=2,
        max_length=96,
        max_prompt_length=48,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        checkpoint_every=100,
        precision=precision,
    )
    return TrainConfig(**{**base, **kw})


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def heldout_logps(
    path: Path, trained: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out log-probs [N, 4] and token counts in fp32 of the base with `trained` swapped
    in: what a user gets from the adapter on the base model as shipped."""
    model, tok = load(path)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in trained:
                p.copy_(trained[name].float())
    encoded, _ = encode_quads(tok, HELDOUT, 96, 48)
    return compute_logps(model, encoded, pad_token_id(tok), precision="fp32")


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_bf16_matches_fp32_losses_and_heldout_logprobs(tiny_qwen2: Path, tmp_path: Path) -> None:
    results = {}
    for precision in ("fp32", "bf16"):
        model, tok = load(tiny_qwen2)
        results[precision] = train(model, tok, TRAIN, config(precision), tmp_path / precision)
    fp32, bf16 = results["fp32"], results["bf16"]
    assert (fp32.runtime["precision"], bf16.runtime["precision"]) == ("fp32", "bf16")
    encoded, _ = encode_quads(AutoTokenizer.from_pretrained(tiny_qwen2), TRAIN, 96, 48)
    # response tokens of a step (batch_size examples), on average
    n = sum(seq.response_len for ex in encoded for seq in ex) * 2 / len(TRAIN)
    for a, b, step in zip(fp32.history, bf16.history, range(STEPS), strict=True):
        tol = SIGMAS * U_BF16 * abs(a["loss"]) / math.sqrt(n)
        print(f"step {step}: loss fp32 {a['loss']:.6f} bf16 {b['loss']:.6f} tol {tol:.2g}")
        assert abs(a["loss"] - b["loss"]) <= tol, (step, a["loss"], b["loss"], tol)

    base, counts = heldout_logps(tiny_qwen2, {})
    lp32, _ = heldout_logps(tiny_qwen2, trained_weights(fp32.model))
    lp16, _ = heldout_logps(tiny_qwen2, trained_weights(bf16.model))
    per_token = (base / counts).abs()
    tol = SIGMAS * U_BF16 * per_token * counts.sqrt()
    deviation = (lp16 - lp32).abs()
    shift = (lp32 - base).abs()
    print(
        f"held-out: max |bf16 - fp32| {deviation.max():.4g} (tolerance {tol.min():.3g}-"
        f"{tol.max():.3g}), training shift mean {shift.mean():.4g}, max {shift.max():.4g}"
    )
    assert bool((deviation <= tol).all()), (deviation - tol).max()
    # training did move them, and bf16 moved them the same way fp32 did
    assert float(shift.mean()) > 10 * float(deviation.mean())


def test_fp32_masters_only_for_trainable_parameters(tiny_qwen2: Path, tmp_path: Path) -> None:
    model, tok = load(tiny_qwen2)
    n_all = sum(p.numel() for p in model.parameters())
    # an lr so small that each update is below bf16's spacing at the weights' size
    run = TrainingRun(model, tok, TRAIN, config("bf16", learning_rate=1e-6), tmp_path, None)
    trained = [p for _, p in run.named_params]
    n_trained = sum(p.numel() for p in trained)
    assert 0 < n_trained < n_all
    assert all(p.dtype == torch.float32 for p in trained)
    frozen = [p for p in run.model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    held = sum(p.numel() * p.element_size() for p in run.model.parameters())
    fp32_bytes = sum(p.numel() * 4 for p in run.model.parameters() if p.dtype == torch.float32)
    assert fp32_bytes == 4 * n_trained  # the masters, nothing else
    assert held == 4 * n_trained + 2 * (n_all - n_trained)
    # the optimizer steps the fp32 masters: its parameters are exactly those tensors
    stepped = [p for group in run.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in stepped} == {id(p) for p in trained}
    before = [p.detach().clone() for p in trained]
    run.model.train()
    run.run_step()
    moments = [
        v
        for state in run.optimizer.state.values()
        for k, v in state.items()
        if k in ("exp_avg", "exp_avg_sq")
    ]
    assert all(v.dtype == torch.float32 for v in moments)
    assert sum(v.numel() * 4 for v in moments) == 8 * n_trained
    # the update lands in fp32: AdamW's first step moves every weight by about lr, far less
    # than bf16 could hold (2^-8 of 0.02 = 8e-5), and it is all there
    for p, b in zip(trained, before, strict=True):
        moved = (p.detach() - b).abs()
        assert float(moved.max()) <= 1.01e-6 and float(moved.mean()) > 0.5e-6


def test_reference_cache_is_keyed_by_precision(tiny_qwen2: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    refs: dict[str, torch.Tensor] = {}
    for precision in ("fp32", "bf16", "fp32"):
        model, tok = load(tiny_qwen2)
        run = TrainingRun(model, tok, TRAIN, config(precision), tmp_path / precision, cache)
        assert run.ref is not None
        refs.setdefault(precision, run.ref)
        assert torch.equal(run.ref, refs[precision])  # the second fp32 run read the cache
    assert len(list(cache.iterdir())) == 2
    assert not torch.equal(refs["fp32"], refs["bf16"])
    assert torch.allclose(refs["fp32"], refs["bf16"], rtol=0.02)


def test_auto_follows_the_hardware_and_fp32_keeps_old_fingerprints(tiny_qwen2: Path) -> None:
    assert cpu_has_fast_bf16(frozenset({"avx512f", "amx_bf16"}))
    assert cpu_has_fast_bf16(frozenset({"avx512_bf16"}))
    assert not cpu_has_fast_bf16(frozenset({"avx2", "avx512f"}))
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(CloError) as err:
        resolve_precision("fp16", cpu)
    assert err.value.param == "precision"
    tok = AutoTokenizer.from_pretrained(tiny_qwen2)
    encoded, _ = encode_quads(tok, TRAIN, 96, 48)
    fp32 = run_fingerprint(config("fp32"), encoded)
    # packing and the memory budget change no maths: a retry may change them and resume
    same = config("fp32", pack_prompts=False, memory_budget_mb=100)
    assert run_fingerprint(same, encoded) == fp32
    assert run_fingerprint(config("bf16"), encoded) != fp32


def test_auto_resumes_in_the_precision_its_checkpoint_trained_in(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    """A checkpoint written in fp32 (before precision existed, or on a host without fast
    bf16) resumes under "auto" in fp32 wherever it runs; an explicit other precision is
    refused like any other config change."""
    model, tok = load(tiny_qwen2)
    stops = iter([False, True])
    with pytest.raises(Stopped):
        train(model, tok, TRAIN, config("fp32"), tmp_path, should_stop=lambda: next(stops))
    model, tok = load(tiny_qwen2)
    resumed = train(model, tok, TRAIN, config("auto"), tmp_path)
    assert resumed.runtime["precision"] == "fp32" and len(resumed.history) == STEPS - 1
    if resolve_precision("auto", torch.device("cpu")) == "bf16":
        model, tok = load(tiny_qwen2)
        with pytest.raises(CloError, match="different config"):
            train(model, tok, TRAIN, config("bf16"), tmp_path)


def _mapped_ranges(name: str) -> list[tuple[int, int]]:
    """Address ranges of this process's memory maps of files called `name`."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(name):
            start, end = line.split()[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def test_bf16_storage_lets_go_of_the_checkpoint_memory_map(tiny_llama: Path) -> None:
    from clo.precision import store_frozen_in_bf16, trained_parameter_names

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)

    def in_the_map() -> set[str]:
        ranges = _mapped_ranges("model.safetensors")
        return {
            n
            for n, p in model.named_parameters()
            if any(a <= p.untyped_storage().data_ptr() < b for a, b in ranges)
        }

    trained = trained_parameter_names(model, "attention")
    assert trained <= in_the_map()  # loaded in the file's dtype: views of the mapped file
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in trained}
    store_frozen_in_bf16(model, trained)
    assert in_the_map() == set()  # nothing points into the checkpoint: it can be unmapped
    for name, p in model.named_parameters():
        assert p.dtype == (torch.float32 if name in trained else torch.bfloat16), name
        if name in trained:
            assert torch.equal(p, before[name]), name
