"""The training loop: what trains, exact resume, stop hook, progress, methods, schedule."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from transformers import AutoModelForCausalLM, AutoTokenizer

from clo.checkpoint import latest_checkpoint, load_checkpoint
from clo.config import TrainConfig
from clo.encoding import encode_quads
from clo.errors import CloError, Stopped
from clo.pairs import Quadruple
from clo.schedule import lr_at
from clo.trainer import make_plan, train
from tests.support.threads import one_torch_thread  # noqa: F401  (autouse)

QUADS = [
    Quadruple(
        f"Question {i}: what is {i} plus {i}?",
        f"It is {2 * i}, a small number.",
        f"Frage {i}: Was ist {i} plus {i}?",
        f"Es ist {2 * i}, eine kleine Zahl.",
    )
    for i in range(6)
]


def small_config(**kw) -> TrainConfig:
    base = dict(
        max_steps=4,
        batch_size=2,
        max_length=64,
        max_prompt_length=32,
        learning_rate=1e-2,
        warmup_ratio=0.25,
        checkpoint_every=100,
    )
    return TrainConfig(**{**base, **kw})


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_attention_only_leaves_every_other_weight_bit_identical(
    tiny_qwen2: Path, tmp_path: Path
) -> None:
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_qwen2).named_parameters())
    model, tok = load(tiny_qwen2)
    stops = iter([False, False, False, True])
    with pytest.raises(Stopped):
        train(
            model, tok, QUADS, small_config(max_steps=5), tmp_path, should_stop=lambda: next(stops)
        )
    changed = []
    for name, p in model.named_parameters():
        if ".self_attn." in name:
            changed.append(not torch.equal(p, base[name]))
        else:
            assert torch.equal(p, base[name]), f"{name} changed"
    assert changed and all(changed)  # every q/k/v/o weight and bias moved
    # optimizer state exists for trainable params only
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert ckpt.step == 3
    attn = [p for n, p in model.named_parameters() if ".self_attn." in n]
    assert len(ckpt.optimizer["state"]) == len(attn)
    shapes = sorted(tuple(s["exp_avg"].shape) for s in ckpt.optimizer["state"].values())
    assert shapes == sorted(tuple(p.shape) for p in attn)
    assert set(ckpt.tensors) == {n for n in base if ".self_attn." in n}


@pytest.mark.parametrize(
    ("method", "trainable", "stop_at"),
    [
        ("clo", "attention", 3),
        ("sft+dpo", "lora", 1),  # stopped inside the SFT phase
        ("sft+dpo", "lora", 2),  # stopped at the switch: DPO not started, no reference yet
        ("sft+dpo", "attention", 3),  # stopped inside the DPO phase
    ],
)
def test_resume_continues_exactly(
    tiny_qwen2: Path, tmp_path: Path, method: str, trainable: str, stop_at: int
) -> None:
    cfg = small_config(
        method=method,
        trainable=trainable,
        max_steps=4,
        grad_accum=2,
        checkpoint_every=2,
        max_length=48,
        max_prompt_length=24,
    )
    model, tok = load(tiny_qwen2)
    straight = train(model, tok, QUADS, cfg, tmp_path / "straight")

    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] == stop_at + 1

    model, tok = load(tiny_qwen2)
    with pytest.raises(Stopped, match=f"step {stop_at} of 4"):
        train(model, tok, QUADS, cfg, tmp_path / "resumed", should_stop=stop)
    seen: list[int] = []
    model, tok = load(tiny_qwen2)
    resumed = train(
        model,
        tok,
        QUADS,
        cfg,
        tmp_path / "resumed",
        progress=lambda m: "loss" in m and seen.append(m["step"]),  # steps, not checkpoints
    )
    assert seen == list(range(stop_at + 1, 5))  # continued, did not start over
    want = dict(straight.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=1e-5, atol=1e-6, msg=name)
    assert resumed.metrics["loss"] == pytest.approx(straight.metrics["loss"], rel=1e-4)


def test_resume_keeps_the_order_its_checkpoint_recorded(tiny_qwen2: Path, tmp_path: Path) -> None:
    # A run checkpointed by code that batched in plain random order (as before grouping
    # existed) resumes under grouping on with that order: same result as never stopping.
    plain = small_config(max_steps=4, checkpoint_every=2, batch_size=3, group_by_length=False)
    model, tok = load(tiny_qwen2)
    straight = train(model, tok, QUADS, plain, tmp_path / "straight")
    stops = iter([False, False, True])
    model, tok = load(tiny_qwen2)
    with pytest.raises(Stopped, match="step 2 of 4"):
        train(model, tok, QUADS, plain, tmp_path / "resumed", should_stop=lambda: next(stops))
    grouped = plain.model_copy(update={"group_by_length": True})
    # the trainer's own lengths: grouping would pick another order for this run
    encoded, _ = encode_quads(tok, QUADS, plain.max_length, plain.max_prompt_length)
    lengths = [max(len(seq.input_ids) for seq in ex) for ex in encoded]
    assert make_plan(6, grouped, lengths).order != make_plan(6, plain, lengths).order
    model, tok = load(tiny_qwen2)
    resumed = train(model, tok, QUADS, grouped, tmp_path / "resumed")
    want = dict(straight.model.named_parameters())
    for name, p in resumed.model.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_resume_refuses_a_different_config(tiny_qwen2: Path, tmp_path: Path) -> None:
    model, tok = load(tiny_qwen2)
    with pytest.raises(Stopped):
        train(model, tok, QUADS, small_config(), tmp_path, should_stop=lambda: True)
    model, tok = load(tiny_qwen2)
    with pytest.raises(CloError, match="different config"):
        train(model, tok, QUADS, small_config(learning_rate=2e-2), tmp_path)


def test_configs_and_checkpoints_from_before_sft_dpo_changed_still_load(
    tiny_qwen2: Path,
) -> None:
    import hashlib

    from clo.encoding import encoding_fingerprint
    from clo.trainer import run_fingerprint

    stored = TrainConfig.model_validate({"method": "sft+dpo", "sft_steps_fraction": 0.3})
    assert "sft_steps_fraction" not in stored.model_dump()  # retired: accepted and dropped
    _, tok = load(tiny_qwen2)
    encoded, _ = encode_quads(tok, QUADS, 64, 32)
    cfg = small_config()
    # what the fingerprint hashed before: no new fields, the retired one, the old default
    old = cfg.model_dump(
        mode="json",
        exclude={
            "checkpoint_every",
            "gradient_checkpointing",
            "logprob_chunk_tokens",
            "group_by_length",
            "export_dtype",
            "disable_dropout",
            "optimizer",
            "precision",  # fp32, as every CPU run trained before the setting existed
            "pack_prompts",
            "memory_budget_mb",
        },
    )
    old.update(sft_steps_fraction=0.5, sft_variant="target")
    blob = json.dumps(old, sort_keys=True) + encoding_fingerprint(encoded)
    assert run_fingerprint(cfg, encoded) == hashlib.sha256(blob.encode()).hexdigest()
    assert run_fingerprint(cfg.model_copy(update={"export_dtype": "bfloat16"}), encoded) == (
        run_fingerprint(cfg, encoded)
    )
    # sft+dpo's plan changed: a checkpoint of the old split plan must not resume
    dpo = cfg.model_copy(update={"method": "sft+dpo"})
    old_dpo = {**old, "method": "sft+dpo"}
    blob = json.dumps(old_dpo, sort_keys=True) + encoding_fingerprint(encoded)
    assert run_fingerprint(dpo, encoded) != hashlib.sha256(blob.encode()).hexdigest()


def test_progress_reports_every_step(tiny_llama: Path, tmp_path: Path) -> None:
    events: list[dict] = []
    model, tok = load(tiny_llama)
    result = train(model, tok, QUADS, small_config(max_steps=3), tmp_path, progress=events.append)
    assert [e["step"] for e in events] == [1, 2, 3]
    keys = {
        "step",
        "total_steps",
        "loss",
        "nll",
        "cl_loss",
        "margin_en",
        "margin_tgt",
        "accuracy_en",
        "accuracy_tgt",
        "lr",
        "tokens_per_second",
        "epoch",
    }
    assert keys <= set(events[0])
    assert all(e["total_steps"] == 3 and e["tokens_per_second"] > 0 for e in events)
    assert events[0]["lr"] == pytest.approx(1e-2)  # warmup of 1 step reaches peak at step 0
    assert events[0]["loss"] == pytest.approx(0.5 * events[0]["nll"] + 0.5 * events[0]["cl_loss"])
    assert result.steps == 3 and result.truncation["examples"] == len(QUADS)
    json.dumps(result.metrics)  # serialisable for the job row


@pytest.mark.parametrize("method", ["dpo", "sft"])
def test_other_methods_run_and_learn(tiny_qwen2: Path, tmp_path: Path, method: str) -> None:
    events: list[dict] = []
    model, tok = load(tiny_qwen2)
    # one batch of all examples, so every step sees the same data and the loss must fall
    train(
        model,
        tok,
        QUADS,
        small_config(
            method=method,
            max_steps=5,
            warmup_ratio=0.0,
            batch_size=len(QUADS),
            learning_rate=3e-3,
            schedule="constant",
        ),
        tmp_path,
        progress=events.append,
    )
    key = "cl_loss" if method == "dpo" else "nll"
    assert events[-1][key] < events[0][key]
    if method == "dpo":
        assert events[0]["cl_loss"] == pytest.approx(events[0]["loss"])  # no NLL term


def test_sft_plus_dpo_switches_phase(tiny_qwen2: Path, tmp_path: Path) -> None:
    events: list[dict] = []
    model, tok = load(tiny_qwen2)
    train(
        model,
        tok,
        QUADS,
        small_config(method="sft+dpo", max_steps=4),
        tmp_path,
        progress=events.append,
    )
    assert [e["phase"] for e in events] == ["sft", "sft", "dpo", "dpo"]
    # DPO uses the SFT model as reference: its implicit rewards start from zero
    assert events[2]["margin_en"] == pytest.approx(0.0, abs=1e-5)


def test_sft_plus_dpo_runs_both_phases_over_all_the_data(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper's SFT+DPO: SFT over every example, then DPO over every pair, each phase
    with a fresh optimizer and LR warmup, DPO against the SFT model."""
    from clo import training_run  # where TrainingRun.run_step looks loss_step up

    model, tok = load(tiny_qwen2)
    cfg = small_config(method="sft+dpo", max_steps=None, epochs=1.0, batch_size=2)
    encoded, _ = encode_quads(tok, QUADS, cfg.max_length, cfg.max_prompt_length)
    example_of = {seq.input_ids: i for i, ex in enumerate(encoded) for seq in ex}
    seen: dict[int, list[int]] = {}  # sequences per example forwarded -> examples, in order
    real_step = training_run.loss_step

    def counting_step(model, sequences, ref, loss_fn, pad_id, chunk_tokens, width=4, **kw):  # type: ignore[no-untyped-def]
        ids = [example_of[s.input_ids] for s in sequences[::width]]
        assert all(example_of[s.input_ids] == ids[k // width] for k, s in enumerate(sequences))
        seen.setdefault(width, []).extend(ids)
        return real_step(model, sequences, ref, loss_fn, pad_id, chunk_tokens, width, **kw)

    monkeypatch.setattr(training_run, "loss_step", counting_step)
    states: list[int] = []  # optimizer state entries just before each optimizer step
    hook = register_optimizer_step_pre_hook(lambda opt, *_: states.append(len(opt.state)))
    events: list[dict] = []
    try:
        train(model, tok, QUADS, cfg, tmp_path, progress=events.append)
    finally:
        hook.remove()
    steps = [e for e in events if "loss" in e]
    assert [e["phase"] for e in steps] == ["sft"] * 3 + ["dpo"] * 3  # 6 examples / 2 per step
    # both phases see every example once: SFT forwards 2 responses (variant both), DPO 4
    assert set(seen) == {2, 4}
    assert sorted(seen[2]) == list(range(6)) and sorted(seen[4]) == list(range(6))
    n_params = sum(1 for p in model.parameters() if p.requires_grad)
    assert states == [0, n_params, n_params, 0, n_params, n_params]  # no Adam moments carried
    assert steps[3]["lr"] == steps[0]["lr"]  # DPO warms up again from its own schedule
    # the SFT model is the reference: every implicit reward is 0 at the first DPO step
    # (to float noise: the reference pass batches sequences by length, so pads differently)
    assert steps[3]["margin_en"] == pytest.approx(0.0, abs=1e-5)
    assert steps[3]["margin_tgt"] == pytest.approx(0.0, abs=1e-5)
    assert steps[3]["cl_loss"] == pytest.approx(math.log(2.0), abs=1e-6)


def test_sft_plus_dpo_splits_max_steps_between_its_phases() -> None:
    plan = make_plan(6, TrainConfig(method="sft+dpo", max_steps=5, batch_size=2))
    assert (plan.total_steps, plan.sft_steps) == (5, 2)
    assert len(set(plan.order[4:10])) == 6  # the DPO phase starts a fresh epoch
    with pytest.raises(CloError, match="at least 2 steps"):
        make_plan(6, TrainConfig(method="sft+dpo", max_steps=1))
    full = make_plan(6, TrainConfig(method="sft+dpo", batch_size=2, epochs=2.0))
    assert (full.total_steps, full.sft_steps) == (12, 6)
    for start in (0, 6, 12, 18):  # two epochs per phase, each a permutation of every example
        assert sorted(full.order[start : start + 6]) == list(range(6))


@pytest.mark.parametrize(("variant", "width"), [("target", 1), ("both", 2)])
def test_sft_forwards_only_the_trained_responses(
    tiny_qwen2: Path, tmp_path: Path, variant: str, width: int
) -> None:
    model, tok = load(tiny_qwen2)
    rows: list[int] = []
    # the trainer runs the decoder itself and the LM head in chunks (clo.logprobs)
    model.get_decoder().register_forward_pre_hook(
        lambda _m, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    cache = tmp_path / "reference"
    events: list[dict] = []
    cfg = small_config(method="sft", sft_variant=variant, max_steps=2, batch_size=len(QUADS))
    train(model, tok, QUADS, cfg, tmp_path / "w", events.append, reference_cache_dir=cache)
    # the one-time logit probe (one sequence, clo.logit_transform), then one forward per step
    # of `width` sequences per example, and no reference pass before them
    assert rows == [1] + [len(QUADS) * width] * 2
    assert not cache.exists() or not any(cache.iterdir())
    assert set(events[0]) >= {"loss", "nll"} and "cl_loss" not in events[0]
    assert events[0]["loss"] == pytest.approx(events[0]["nll"])


def test_empty_data_is_a_clear_error(tiny_qwen2: Path, tmp_path: Path) -> None:
    model, tok = load(tiny_qwen2)
    with pytest.raises(CloError, match="train_quads is empty"):
        train(model, tok, [], small_config(), tmp_path)


def test_plan_is_seeded_and_covers_epochs() -> None:
    cfg = TrainConfig(batch_size=2, grad_accum=2, epochs=2.0, seed=3)
    plan = make_plan(10, cfg)
    assert plan.total_steps == 5  # ceil(2 epochs * 10 / 4)
    assert sorted(plan.order[:10]) == list(range(10))  # first epoch is a permutation
    assert plan.order == make_plan(10, cfg).order
    assert (
        plan.order
        != make_plan(10, TrainConfig(batch_size=2, grad_accum=2, epochs=2.0, seed=4)).order
    )
    assert [len(mb) for mb in plan.micro_batches(0)] == [2, 2]


def _padding_share(plan, lengths: list[int]) -> float:  # type: ignore[no-untyped-def]
    real = padded = 0
    for step in range(plan.total_steps):
        for batch in plan.micro_batches(step):
            real += sum(lengths[i] for i in batch)
            padded += max(lengths[i] for i in batch) * len(batch)
    return 1 - real / padded


def test_length_grouping_cuts_padding_and_keeps_epochs() -> None:
    lengths = [
        int(x) for x in torch.randint(20, 500, (103,), generator=torch.Generator().manual_seed(1))
    ]
    cfg = TrainConfig(batch_size=4, epochs=3.0, seed=7)
    grouped = make_plan(len(lengths), cfg, lengths)
    plain = make_plan(len(lengths), cfg.model_copy(update={"group_by_length": False}), lengths)
    assert plain.order == make_plan(len(lengths), cfg).order  # no lengths: the plain order
    assert _padding_share(grouped, lengths) < 0.5 * _padding_share(plain, lengths)
    n = len(lengths)
    for epoch in range(3):  # every epoch still sees every example once
        assert sorted(grouped.order[epoch * n : (epoch + 1) * n]) == list(range(n))
    assert max(lengths[i] for i in grouped.micro_batches(0)[0]) == max(lengths)  # OOM at step 1
    assert grouped.order == make_plan(n, cfg, lengths).order  # seeded


def test_lr_schedule_closed_form() -> None:
    assert lr_at(0, 10, 2, 1.0) == pytest.approx(0.5)
    assert lr_at(1, 10, 2, 1.0) == pytest.approx(1.0)
    assert lr_at(6, 10, 2, 1.0, "cosine") == pytest.approx(0.5)  # halfway through decay
    assert lr_at(6, 10, 2, 1.0, "linear") == pytest.approx(0.5)
    assert lr_at(9, 10, 2, 1.0, "constant") == 1.0
    assert lr_at(0, 10, 0, 1.0) == 1.0
    with pytest.raises(ValueError, match="cosine, linear or constant"):
        lr_at(3, 10, 2, 1.0, "step")


def test_gradient_checkpointing_gives_the_same_update(tiny_llama: Path, tmp_path: Path) -> None:
    results = []
    for flag in (False, True):
        model, tok = load(tiny_llama)
        results.append(
            train(
                model,
                tok,
                QUADS,
                small_config(max_steps=2, gradient_checkpointing=flag),
                tmp_path / str(flag),
            ).model
        )
        assert all(layer.gradient_checkpointing == flag for layer in model.model.layers)
    plain, ckpt = (dict(m.named_parameters()) for m in results)
    for name, p in ckpt.items():
        torch.testing.assert_close(p, plain[name], rtol=1e-5, atol=1e-6, msg=name)


def test_reference_logps_are_cached_by_content(
    tiny_qwen2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clo import reference
    from clo.encoding import encode_quads

    calls: list[int] = []
    real = reference.compute_logps
    monkeypatch.setattr(
        reference, "compute_logps", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    model, tok = load(tiny_qwen2)
    encoded, _ = encode_quads(tok, QUADS, 64, 32)
    cache = tmp_path / "ref"

    def ref(enc):
        return reference.reference_logps(model, tok, enc, tok.pad_token_id, cache_dir=cache)

    first = ref(encoded)
    assert first.shape == (len(QUADS), 4) and len(calls) == 1
    torch.testing.assert_close(ref(encoded), first)
    assert len(calls) == 1  # served from the cache
    ref(encode_quads(tok, QUADS[:3], 64, 32)[0])  # different data -> different key
    assert len(calls) == 2
    with torch.no_grad():  # different weights at the same path -> different key
        model.lm_head.weight.mul_(0.5)
    assert not torch.allclose(ref(encoded), first)
    assert len(calls) == 3 and len(list(cache.iterdir())) == 3


def test_cli_train_exports_an_adapter(tiny_qwen2: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from clo.cli import app

    data = tmp_path / "parallel.jsonl"
    data.write_text("\n".join(json.dumps(q.to_dict()) for q in QUADS) + "\n")
    args = [
        "train",
        str(tiny_qwen2),
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--max-length",
        "64",
        "--max-prompt-length",
        "32",
        "--heldout",
        "2",
        "--learning-rate",
        "1e-3",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["metrics"]["train_steps"] == 2
    assert "heldout_reward_accuracy_en" in report["metrics"]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()
    bad = CliRunner().invoke(app, [*args[:5], "--method", "kto"], env={"COLUMNS": "200"})
    assert bad.exit_code == 2 and "Invalid value for --method" in bad.output, bad.output
