"""The API formats a job can send, one object each, in the ``FORMATS`` registry.

``chat`` is OpenAI's ``/chat/completions``; ``responses`` is ``/responses``;
``messages`` is Claude's ``/messages``; ``gemini`` is
``/v1beta/models/{model}:generateContent``; ``embeddings`` is
``/embeddings``. Each promises its path, its key headers, the exact JSON of
a request and the one ``Answer`` record whatever the format, so the results
schema never changes. A new kind of request is one more ``Format`` subclass
in its own module, added to ``FORMATS``.
"""

from __future__ import annotations

from batchrun.formats.base import Api, Format
from batchrun.formats.chat import ChatFormat
from batchrun.formats.embeddings import EmbeddingsFormat
from batchrun.formats.gemini import GeminiFormat
from batchrun.formats.messages import MessagesFormat
from batchrun.formats.responses import ResponsesFormat

FORMATS: dict[Api, Format] = {
    format.api: format
    for format in (
        ChatFormat(),
        ResponsesFormat(),
        MessagesFormat(),
        GeminiFormat(),
        EmbeddingsFormat(),
    )
}

__all__ = ["FORMATS", "Api", "Format"]
