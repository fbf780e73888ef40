"""The API formats a job can send, one object each, in the ``FORMATS`` registry.

``chat`` is OpenAI's ``/chat/completions``; ``responses`` is ``/responses``;
``messages`` is Claude's ``/messages``; ``gemini`` is
``/v1beta/models/{model}:generateContent``; ``embeddings`` is
``/embeddings``; ``images`` is ``/images/generations`` (``/images/edits``
with images), ``speech`` ``/audio/speech``, ``transcription`` and
``translation`` ``/audio/transcriptions`` and ``/audio/translations``,
``rerank`` ``/rerank``, ``video`` new-api's ``/video/generations`` task and
``videos`` OpenAI's ``/videos`` task. Each promises its path, its key headers, the exact JSON of
a request and the one ``Answer`` record whatever the format, so the results
schema never changes. A new kind of request is one more ``Format`` subclass
in its own module, added to ``FORMATS``.
"""

from __future__ import annotations

from batchrun.formats.base import Api, Format
from batchrun.formats.chat import ChatFormat
from batchrun.formats.embeddings import EmbeddingsFormat
from batchrun.formats.gemini_images import GeminiImagesFormat
from batchrun.formats.images import ImagesFormat
from batchrun.formats.messages import MessagesFormat
from batchrun.formats.rerank import RerankFormat
from batchrun.formats.responses import ResponsesFormat
from batchrun.formats.speech import SpeechFormat
from batchrun.formats.transcription import TranscriptionFormat, TranslationFormat
from batchrun.formats.video import VideoFormat, VideosFormat

FORMATS: dict[Api, Format] = {
    format.api: format
    for format in (
        ChatFormat(),
        ResponsesFormat(),
        MessagesFormat(),
        GeminiImagesFormat(),
        EmbeddingsFormat(),
        ImagesFormat(),
        SpeechFormat(),
        TranscriptionFormat(),
        TranslationFormat(),
        RerankFormat(),
        VideoFormat(),
        VideosFormat(),
    )
}

__all__ = ["FORMATS", "Api", "Format"]
