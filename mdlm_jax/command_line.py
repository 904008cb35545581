"""The one error path of every entry point (``main``, ``data.prepare``, the prompt/answer
builder, ``data.make_corpus``): a user mistake ends as one line ``error: ...`` on stderr
and exit status 1; ``MDLM_TRACEBACK=1`` re-raises for the full traceback.

A user mistake is an exception of :data:`USER_ERRORS` raised with a message that names the
problem and the fix (bad config values, missing or malformed files, a refused resume, a
non-finite result, a full disk). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys

USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a KeyError's message without its quotes)."""
    msg = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(part.strip() for part in str(msg).splitlines() if part.strip())
    return text or type(error).__name__


def run(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with user mistakes turned into one line and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except KeyboardInterrupt:
        sys.exit(130)
    except USER_ERRORS as e:
        if os.environ.get("MDLM_TRACEBACK"):
            raise
        sys.exit(f"error: {one_line(e)} (MDLM_TRACEBACK=1 shows the traceback)")
