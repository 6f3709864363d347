"""Check a redaction: the output differs from the input inside the boxes and equals it outside.

Shared by the integration tests and ``scripts/faces_on_sqs.py``, so both judge a
run the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kombu_worker_sdk.examples.faces import imaging
from kombu_worker_sdk.examples.faces.schemas import Box


def check_redaction(original_png: bytes, result_png: bytes, boxes: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the figures; raise AssertionError when the redaction is wrong."""
    before, after = imaging.decode_image(original_png), imaging.decode_image(result_png)
    assert before.shape == after.shape, f"shape changed: {before.shape} → {after.shape}"
    inside = imaging.box_mask(before.shape, [Box(**b) for b in boxes]) > 0
    changed = np.any(before != after, axis=-1)
    assert not changed[~inside].any(), "pixels outside the boxes changed"
    share = float(changed[inside].mean()) if inside.any() else 0.0
    assert not boxes or share > 0.5, f"only {share:.0%} of the boxed pixels changed"
    return {"boxes": len(boxes), "changed_inside": round(share, 3)}
