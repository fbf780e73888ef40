"""batchrun: run a prompt set against several models on an OpenAI-compatible gateway."""

__version__ = "0.1.0"
