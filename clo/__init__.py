"""Cross-Lingual Optimization (CLO): teach English-centric LLMs to answer in another language."""

__version__ = "0.1.0"
