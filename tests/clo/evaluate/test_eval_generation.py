"""Batched greedy generation gives the same answers as one prompt at a time."""

from clo.evaluate.generation import generate_answers

PROMPTS = ["Wie koche ich ein Ei?", "Hi", "Write a long poem about the sea, the sky and the wind."]


def test_batched_left_padded_generation_matches_single_prompts(qwen2_loaded):
    model, tokenizer = qwen2_loaded
    done = []
    batched = generate_answers(
        model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=3, on_batch=done.append
    )
    single = [generate_answers(model, tokenizer, [p], max_new_tokens=12)[0] for p in PROMPTS]
    assert batched == single
    assert done == [3]


def test_one_new_token_is_the_greedy_argmax(qwen2_loaded):
    import torch

    from clo.evaluate.scoring import encode_prompts

    model, tokenizer = qwen2_loaded
    answers = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=1, batch_size=2)
    for prompt, answer in zip(PROMPTS, answers, strict=True):
        ids = torch.tensor(encode_prompts(tokenizer, [prompt], 512))
        with torch.no_grad():
            best = int(model(ids).logits[0, -1].argmax())
        assert answer == tokenizer.decode([best], skip_special_tokens=True).strip()


def test_base_model_without_chat_template(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    assert not tokenizer.chat_template
    answers = generate_answers(model, tokenizer, PROMPTS[:2], max_new_tokens=4, batch_size=2)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
