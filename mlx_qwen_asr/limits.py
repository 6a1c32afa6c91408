"""Limits on what a request may ask for, so that no input makes the process attempt an
allocation it cannot make (a 100 kB prompt once ended in a refused ~112 GB allocation and
a crash inside the BLAS library, taking every other request of the server with it).

The context (the system prompt) is part of every segment's prompt, so its tokens are
limited; the token budget sets the size of the key/value cache made before decoding, so
it is limited too. Audio headers are checked in audio.py (`check_header`).
"""

from __future__ import annotations

from .errors import OptionError

# A context is names and terms (Whisper's initial prompt keeps 224 tokens); 1024 tokens is
# about 700 English words, and costs the prefill less than a 30 s segment's audio tokens do.
MAX_CONTEXT_TOKENS = 1024
# Tokens one segment may generate: far above any transcript (a 30 s segment's default budget
# is 392) and still a key/value cache that fits (the 1.7B model: ~1.9 GB in bfloat16).
MAX_NEW_TOKENS = 16384
# One segment is decoded whole: its audio tokens (13 a second) and default budget (12 a
# second) grow with it. 20 minutes keeps both well inside the model's 65536 positions.
MAX_SEGMENT_SECONDS = 1200.0


def check_context(tokenizer, context: str, name: str = "context") -> None:
    """OptionError if `context` is more than MAX_CONTEXT_TOKENS tokens. `name` is what the
    user called it (--context, prompt)."""
    data = context.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_CONTEXT_TOKENS:
        return   # every token holds at least one byte: no need to count
    count = len(tokenizer.encode(context))
    if count > MAX_CONTEXT_TOKENS:
        raise OptionError(f"{name} is {count} tokens long; the limit is {MAX_CONTEXT_TOKENS} tokens "
                          f"(give names and terms, not a document)")
