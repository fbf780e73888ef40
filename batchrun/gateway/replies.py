"""Deterministic answers for the built-in gateway.

``answer`` promises the same text for the same (model, prompt) every time.
Arithmetic questions ("What is 17 + 25?") are answered correctly with the
model's configured accuracy, so comparisons between models have something
real to find; anything else gets a reproducible sentence.
"""

from __future__ import annotations

import hashlib
import json
import re

_ARITHMETIC = re.compile(r"(-?\d+)\s*([+\-*x×/])\s*(-?\d+)")
_WORDS = (
    "model", "answer", "result", "careful", "concise", "reply", "gateway",
    "token", "prompt", "batch", "value", "signal", "measure", "compare",
    "detail", "clear", "short", "context", "example", "reason", "summary",
)  # fmt: skip


def unit_hash(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def answer(model: str, prompt: str, accuracy: float) -> str:
    """The reply of ``model`` to ``prompt``; arithmetic right with probability ``accuracy``.

    A grading request (one asking for a JSON "score" and "reason") gets a JSON
    verdict: a high score when the answer it quotes holds the expected value.
    """
    if '"score"' in prompt and '"reason"' in prompt:
        return _verdict(model, prompt)
    match = _ARITHMETIC.search(prompt)
    if match:
        left, op, right = int(match.group(1)), match.group(2), int(match.group(3))
        value = _compute(left, op, right)
        if unit_hash(model, prompt, "accuracy") >= accuracy:
            value += 1 + int(unit_hash(model, prompt, "offset") * 9)
        return f"The answer is {value}."
    count = 6 + int(unit_hash(model, prompt, "length") * 30)
    words = [_WORDS[int(unit_hash(model, prompt, str(i)) * len(_WORDS))] for i in range(count)]
    return " ".join(words).capitalize() + "."


_EXPECTED = re.compile(r"expected[^:\n]*:\s*(\S+)", re.IGNORECASE)
_ANSWER = re.compile(r"answer[^:\n]*:\s*(.+)", re.IGNORECASE)


def _verdict(model: str, prompt: str) -> str:
    expected = _EXPECTED.search(prompt)
    given = _ANSWER.search(prompt)
    if expected and given:
        right = expected.group(1).strip(".") in given.group(1)
        score = 9 if right else 2
        reason = "matches the expected value" if right else "differs from the expected value"
    else:
        score = 1 + int(unit_hash(model, prompt, "verdict") * 10)
        reason = "a judgement of the answer's quality"
    return json.dumps({"score": score, "reason": reason})


def _compute(left: int, op: str, right: int) -> int:
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "/":
        return left // right if right else 0
    return left * right


def count_tokens(text: str) -> int:
    """A rough token count: about four characters a token, at least one."""
    return max(1, (len(text) + 3) // 4)
