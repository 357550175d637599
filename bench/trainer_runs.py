"""One configuration of bench.bench_trainer_vs_trl in this process: ours or TRL's DPOTrainer.

Both train the attention projections (clo.trainable.apply_trainable) on the same quadruples
for the same steps and report time, memory (bench.common.Meter) and the work done
(tokens, parameters, training FLOPs: bench.flops).

The closest TRL setup to CLO: every example becomes two DPO rows, (x_en: y_en > y_tgt) and
(x_tgt: y_tgt > y_en), with loss_type ["sigmoid", "sft"] weighted 0.5/0.5 (λ = 0.5). One
difference stays: TRL's SFT term covers the chosen side of BOTH rows (English included),
CLO's NLL only the target-language response.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Meter

LEARNING_RATE = 5e-6
MAX_LENGTH = 512
MAX_PROMPT_LENGTH = 256
# TRL mode -> (precompute_ref_log_probs, gradient_checkpointing); "best" is the old name
# of "leanest" (bench/gpu_bench.py runs it)
TRL_MODES = {"fastest": (True, False), "leanest": (True, True), "best": (True, True)}


def load(model_dir: Path, device: str, dtype: str) -> tuple[Any, Any]:
    from clo.loading import load_model_and_tokenizer

    return load_model_and_tokenizer(model_dir, dtype=dtype, device=device)


def sequence_lengths(tokenizer: Any, quads: list[Any]) -> list[int]:
    """Prompt+response tokens of the four sequences of every example (what both trainers see)."""
    from clo.encoding import encode_quads

    encoded, _ = encode_quads(tokenizer, quads, MAX_LENGTH, MAX_PROMPT_LENGTH)
    return [len(s.input_ids) for seqs in encoded for s in seqs]


def work(model: Any, tokenizer: Any, quads: list[Any]) -> dict[str, Any]:
    """Tokens, parameter counts and training FLOPs of the run (bench.flops), the same for all."""
    from bench.flops import model_dims, training_flops

    lengths = sequence_lengths(tokenizer, quads)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    layers, attn_dim = model_dims(model.config)
    return {
        "tokens": sum(lengths),
        "params_total": params,
        "trainable": trainable,
        "train_flops": training_flops(lengths, params, trainable, layers, attn_dim),
    }


def ours_config(
    steps: int,
    batch: int,
    precision: str,
    chunk_tokens: int | None = None,
    pack_prompts: bool = True,
    memory_budget_mb: int | None = None,
) -> Any:
    """Our trainer's settings in the benchmark: the defaults, attention-only, as TRL's runs
    (`memory_budget_mb`: the activation policy's budget, to measure its checkpointing)."""
    from clo.config import TrainConfig

    return TrainConfig(
        trainable="attention",
        max_steps=steps,
        batch_size=batch,
        learning_rate=LEARNING_RATE,
        max_length=MAX_LENGTH,
        max_prompt_length=MAX_PROMPT_LENGTH,
        checkpoint_every=steps,
        precision=precision,
        pack_prompts=pack_prompts,
        memory_budget_mb=memory_budget_mb,
        **({"logprob_chunk_tokens": chunk_tokens} if chunk_tokens else {}),
    )


def run_ours(
    model_dir: Path,
    quads: list[Any],
    steps: int,
    batch: int,
    device: str,
    dtype: str,
    precision: str,
    chunk_tokens: int | None = None,
    pack_prompts: bool = True,
    memory_budget_mb: int | None = None,
) -> dict[str, Any]:
    from clo.trainer import train

    model, tokenizer = load(model_dir, device, dtype)
    config = ours_config(steps, batch, precision, chunk_tokens, pack_prompts, memory_budget_mb)
    step_times: list[float] = []
    first_step_at: list[float] = []
    with tempfile.TemporaryDirectory() as workdir, Meter(device) as meter:

        def progress(event: dict[str, Any]) -> None:
            step_times.append(event["step_seconds"])
            if not first_step_at:
                first_step_at.append(time.perf_counter() - meter.started - event["step_seconds"])

        result = train(model, tokenizer, quads, config, Path(workdir), progress=progress)
    return {
        **meter.report(),
        **work(result.model, tokenizer, quads),
        "final_loss": result.metrics.get("loss"),
        "setup_s": first_step_at[0] if first_step_at else None,
        "step_s": sorted(step_times)[len(step_times) // 2],
        "steps_s": sum(step_times),
        "precision": result.runtime["precision"],
        "ours_options": result.runtime,
    }


def trl_rows(tokenizer: Any, quads: list[Any]) -> list[dict[str, str]]:
    """Two DPO rows per example; prompts rendered with the same chat template as ours."""

    def prompt(text: str) -> str:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )

    rows = []
    for q in quads:
        rows.append({"prompt": prompt(q.x_en), "chosen": q.y_en, "rejected": q.y_tgt})
        rows.append({"prompt": prompt(q.x_tgt), "chosen": q.y_tgt, "rejected": q.y_en})
    return rows


def run_trl(
    model_dir: Path,
    quads: list[Any],
    steps: int,
    batch: int,
    device: str,
    dtype: str,
    mode: str,
    precision: str,
) -> dict[str, Any]:
    """mode "fastest": precomputed reference log-probs, no gradient checkpointing; "leanest"
    (alias "best"): the same with gradient checkpointing; "default": DPOConfig's defaults (a
    reference model copy, its gradient checkpointing). All in `precision`: bf16 is TRL's
    mixed precision (bf16 autocast over the fp32 model, the Trainer's `bf16=True`)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from clo.config import TrainConfig
    from clo.trainable import apply_trainable

    model, tokenizer = load(model_dir, device, dtype)
    apply_trainable(model, TrainConfig(trainable="attention"))
    rows = trl_rows(tokenizer, quads)
    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin = time.perf_counter()
            self.last = self.begin

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            now = time.perf_counter()
            step_times.append(now - self.last)
            self.last = now

    timer = Timer()
    options: dict[str, Any] = {"bf16": precision == "bf16"}
    if mode in TRL_MODES:
        precompute, checkpointing = TRL_MODES[mode]
        options.update(precompute_ref_log_probs=precompute, gradient_checkpointing=checkpointing)
    with tempfile.TemporaryDirectory() as out_dir, Meter(device) as meter:
        config = DPOConfig(
            output_dir=out_dir,
            per_device_train_batch_size=2 * batch,
            max_steps=steps,
            learning_rate=LEARNING_RATE,
            lr_scheduler_type="cosine",
            beta=0.1,
            loss_type=["sigmoid", "sft"],
            loss_weights=[0.5, 0.5],
            max_length=MAX_LENGTH,
            report_to="none",
            save_strategy="no",
            logging_steps=1,
            disable_tqdm=True,
            use_cpu=not device.startswith("cuda"),
            dataloader_num_workers=0,
            seed=0,
            **options,
        )
        trainer = DPOTrainer(
            model=model,
            args=config,
            processing_class=tokenizer,
            train_dataset=Dataset.from_list(rows),
            callbacks=[timer],
        )
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        **meter.report(),
        **work(model, tokenizer, quads),
        "final_loss": losses[-1] if losses else None,
        "setup_s": timer.begin - meter.started,
        "step_s": sorted(step_times)[len(step_times) // 2],
        "steps_s": sum(step_times),
        "precision": precision,
        "trl_options": {
            "gradient_checkpointing": config.gradient_checkpointing,
            "bf16": config.bf16,
            "precompute_ref_log_probs": config.precompute_ref_log_probs,
        },
    }
