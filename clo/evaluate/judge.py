"""Pairwise judged win rate against a baseline, with each pair judged in both orders.

Protocol (ours, following MT-Bench's swap rule): every (model answer, baseline answer)
pair is judged twice, once with the model as answer A and once with it as answer B. The
pair is a **win** only when both orders prefer the model, a **loss** only when both prefer
the baseline, and a **tie** otherwise (both ties, one tie, the orders disagree, or an
unparseable reply). Win rate = (wins + 0.5·ties) / n, standard error sqrt(p(1−p)/n).

Judges: any OpenAI-compatible chat completions endpoint (`OpenAIJudge`, httpx) or a local
Hugging Face causal LM (`LocalJudge`). The prompt is `prompts/judge_v1.txt`; its version
and sha256 go into the report.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Protocol

import httpx

from clo.errors import CloError
from clo.evaluate.report import JudgedPair, WinRate

logger = logging.getLogger(__name__)

PROMPT_VERSION = "judge_v1"
Verdict = Literal["A", "B", "tie", "invalid"]
Outcome = Literal["win", "tie", "loss"]

_VERDICT_RE = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_BARE_RE = re.compile(r"^\W*(A|B|tie)\W*$", re.IGNORECASE)
_PLACEHOLDER_RE = re.compile(r"\{\{(instruction|answer_a|answer_b|language)\}\}")


class JudgeError(CloError):
    """The judge endpoint could not be reached or refused the request."""


def judge_prompt_template(version: str = PROMPT_VERSION) -> str:
    return (
        resources.files("clo.evaluate")
        .joinpath("prompts", f"{version}.txt")
        .read_text(encoding="utf-8")
    )


def judge_prompt_sha256(version: str = PROMPT_VERSION) -> str:
    return hashlib.sha256(judge_prompt_template(version).encode("utf-8")).hexdigest()


def render_judge_prompt(
    instruction: str, answer_a: str, answer_b: str, language: str, template: str | None = None
) -> str:
    """Fill the template in one pass, so braces inside answers are never re-substituted."""
    values = {
        "instruction": instruction,
        "answer_a": answer_a,
        "answer_b": answer_b,
        "language": language,
    }
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template or judge_prompt_template())


def parse_verdict(reply: str) -> Verdict:
    """ "A", "B" or "tie" from a judge reply ([[A]] style, or a bare token); else "invalid"."""
    found = _VERDICT_RE.findall(reply)
    if not found:
        bare = _BARE_RE.match(reply.strip())
        found = [bare.group(1)] if bare else []
    verdicts = {v.upper() if v.lower() != "tie" else "tie" for v in found}
    if len(verdicts) != 1:  # none, or contradictory verdicts in one reply
        return "invalid"
    return verdicts.pop()  # type: ignore[return-value]


class Judge(Protocol):
    """Anything that turns a judge prompt into a reply text."""

    def complete(self, prompt: str) -> str: ...

    def describe(self) -> dict[str, str]: ...


class OpenAIJudge:
    """A judge behind an OpenAI-compatible `POST {base_url}/chat/completions`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        max_tokens: int = 16,
        client: httpx.Client | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise JudgeError(
                f"judge base_url must start with http:// or https://, got {base_url!r}"
            )
        if not model:
            raise JudgeError("judge model must be a non-empty model name")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_retries = max_retries
        self.max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)

    def describe(self) -> dict[str, str]:
        return {"kind": "openai", "model": self.model, "endpoint": self.base_url}

    def complete(self, prompt: str) -> str:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.post(url, json=body)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    return _reply_text(resp)
                error = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in (408, 409, 429) and resp.status_code < 500:
                    raise JudgeError(
                        f"judge at {url} refused the request ({error}); check the "
                        "judge model name and API key"
                    )
            if attempt < self.max_retries:
                time.sleep(min(2.0**attempt * 0.5, 8.0))
        raise JudgeError(f"judge at {url} failed after {self.max_retries + 1} tries ({error})")

    def close(self) -> None:
        self._client.close()


def _reply_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json()["choices"][0]["message"]["content"] or "")
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise JudgeError(
            f"judge reply is not an OpenAI chat completion: {resp.text[:200]}"
        ) from exc


class LocalJudge:
    """A local Hugging Face causal LM as judge (greedy, chat template when it has one)."""

    def __init__(self, model: Any, tokenizer: Any, name: str = "local", max_new_tokens: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens

    def describe(self) -> dict[str, str]:
        return {"kind": "local", "model": self.name, "endpoint": ""}

    def complete(self, prompt: str) -> str:
        from clo.evaluate.generation import generate_answers

        return generate_answers(
            self.model,
            self.tokenizer,
            [prompt],
            max_new_tokens=self.max_new_tokens,
            max_prompt_tokens=4096,
        )[0]


@dataclass(frozen=True)
class PairJudgement:
    prompt: str
    model_answer: str
    baseline_answer: str
    model_first: Verdict  # verdict with the model as answer A
    baseline_first: Verdict  # verdict with the baseline as answer A

    @property
    def outcome(self) -> Outcome:
        return pair_outcome(self.model_first, self.baseline_first)


def pair_outcome(model_first: Verdict, baseline_first: Verdict) -> Outcome:
    """Win/loss only when both orders agree on a winner; everything else is a tie."""
    if model_first == "A" and baseline_first == "B":
        return "win"
    if model_first == "B" and baseline_first == "A":
        return "loss"
    return "tie"


def judge_pairs(
    judge: Judge,
    prompts: Sequence[str],
    model_answers: Sequence[str],
    baseline_answers: Sequence[str],
    language: str,
    concurrency: int = 4,
) -> list[PairJudgement]:
    """Judge every pair in both orders (2n requests, `concurrency` in flight)."""
    if not len(prompts) == len(model_answers) == len(baseline_answers):
        raise ValueError("prompts, model_answers and baseline_answers must have equal length")
    template = judge_prompt_template()
    jobs = []
    for prompt, mine, theirs in zip(prompts, model_answers, baseline_answers, strict=True):
        jobs.append(render_judge_prompt(prompt, mine, theirs, language, template))
        jobs.append(render_judge_prompt(prompt, theirs, mine, language, template))
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        replies = list(pool.map(judge.complete, jobs))
    verdicts = [parse_verdict(r) for r in replies]
    invalid = [r for r, v in zip(replies, verdicts, strict=True) if v == "invalid"]
    if invalid:
        logger.warning("%d judge replies had no verdict, e.g. %r", len(invalid), invalid[0][:80])
    return [
        PairJudgement(
            prompts[i], model_answers[i], baseline_answers[i], verdicts[2 * i], verdicts[2 * i + 1]
        )
        for i in range(len(prompts))
    ]


def win_rate(judgements: Sequence[PairJudgement], prompt_language: str) -> WinRate:
    """Wins/ties/losses, win rate with ties as half, and its binomial standard error."""
    n = len(judgements)
    wins = sum(j.outcome == "win" for j in judgements)
    losses = sum(j.outcome == "loss" for j in judgements)
    ties = n - wins - losses
    rate = (wins + 0.5 * ties) / n if n else None
    stderr = math.sqrt(rate * (1 - rate) / n) if rate is not None else None
    inconsistent = sum(
        {j.model_first, j.baseline_first} <= {"A", "B"} and j.outcome == "tie" for j in judgements
    )
    invalid = sum(
        (j.model_first == "invalid") + (j.baseline_first == "invalid") for j in judgements
    )
    return WinRate(
        prompt_language=prompt_language,
        n=n,
        wins=wins,
        ties=ties,
        losses=losses,
        win_rate=rate,
        stderr=stderr,
        position_inconsistent=inconsistent,
        invalid_verdicts=invalid,
    )


def judged_samples(
    judgements: Sequence[PairJudgement], prompt_language: str, k: int
) -> list[JudgedPair]:
    return [
        JudgedPair(
            prompt_language=prompt_language,
            prompt=j.prompt,
            model_answer=j.model_answer,
            baseline_answer=j.baseline_answer,
            verdict_model_first=j.model_first,
            verdict_baseline_first=j.baseline_first,
            outcome=j.outcome,
        )
        for j in judgements[:k]
    ]
