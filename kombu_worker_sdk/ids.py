"""Random ids for the message path: trace ids and per-delivery claimant tokens.

``uuid.uuid4()`` reads ``os.urandom`` for each id; in some sandboxes (gVisor, seccomp
filters) that system call costs tens of microseconds, more than the rest of a message's
bookkeeping. These ids need uniqueness, not secrecy, so they come from ``random``'s
generator, which Python seeds from the OS once and reseeds in every forked child.
Secrets (the dashboard's token) keep using :mod:`secrets`.
"""

from __future__ import annotations

import random


def random_hex(chars: int = 32) -> str:
    """``chars`` random lowercase hex digits (32: a W3C trace id's 128 bits)."""
    return f"{random.getrandbits(chars * 4):0{chars}x}"
