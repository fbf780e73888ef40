"""Graders of transcripts and rankings: word error rate, NDCG and MRR.

``wer`` promises the word error rate of a transcript against the expected
text: word-level edit distance (substitutions, deletions, insertions) over
the expected words, after the usual normalisation (lower case, punctuation
dropped, whitespace collapsed); 0.0 is perfect and lower is better; it may
pass 1.0. ``ndcg`` and ``mrr`` score a ranking (document indices, best
first) against graded relevance per document (a list, or a JSON array of
numbers): NDCG with gains ``2**rel - 1`` and a log2 discount (1.0 is the
ideal order), MRR the reciprocal rank of the first document with a
relevance above 0. Each is None where it does not apply (nothing expected,
no relevant document).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

_PUNCTUATION = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")


def normalise_words(text: str) -> list[str]:
    """The words of ``text``: NFKC, lower case, punctuation dropped (apostrophes in words kept)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _PUNCTUATION.sub(" ", text).split()


def word_error_rate(hypothesis: str, reference: str) -> float | None:
    """Edits to turn the reference's words into the hypothesis's, over the reference's words."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    if not ref:
        return None if not hyp else float(len(hyp))
    previous = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        current = [i]
        for j, said in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != said))
            )
        previous = current
    return previous[-1] / len(ref)


def relevances(expected: Any) -> list[float] | None:
    """Graded relevance per document: from a list, or a JSON array in a text column."""
    if isinstance(expected, str):
        try:
            expected = json.loads(expected)
        except ValueError:
            return None
    if not isinstance(expected, list):
        return None
    try:
        return [float(value) for value in expected]
    except (TypeError, ValueError):
        return None


def ndcg(ranking: list[int], expected: Any) -> float | None:
    """NDCG of ``ranking`` over all of it; None without relevance or with none above 0."""
    rel = relevances(expected)
    if not rel or max(rel) <= 0:
        return None

    def dcg(order: list[float]) -> float:
        return sum((2**r - 1) / math.log2(rank + 2) for rank, r in enumerate(order))

    got = [rel[i] if 0 <= i < len(rel) else 0.0 for i in ranking]
    return dcg(got) / dcg(sorted(rel, reverse=True)[: max(len(got), 1)] or [0.0])


def mrr(ranking: list[int], expected: Any) -> float | None:
    """The reciprocal rank of the first relevant document (0.0 if none is ranked)."""
    rel = relevances(expected)
    if not rel or max(rel) <= 0:
        return None
    for rank, index in enumerate(ranking, 1):
        if 0 <= index < len(rel) and rel[index] > 0:
            return 1.0 / rank
    return 0.0
