"""OpenAI-compatible fine-tuning surface (docs/OPENAI.md): shapes only, over the native services."""
