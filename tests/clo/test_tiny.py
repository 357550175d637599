from transformers import AutoModelForCausalLM, AutoTokenizer


def test_tiny_models_reload_through_from_pretrained(tiny_qwen2, tiny_llama):
    for path, has_template in ((tiny_qwen2, True), (tiny_llama, False)):
        model = AutoModelForCausalLM.from_pretrained(path)
        tok = AutoTokenizer.from_pretrained(path)
        assert (path / "model.safetensors").exists()
        assert (tok.chat_template is not None) == has_template
        # the byte-level tokenizer round-trips every script the paper uses
        text = "Habari 你好 안녕 über ẹ̀"
        assert tok.decode(tok(text)["input_ids"]) == text
        assert model.config.vocab_size == len(tok)
