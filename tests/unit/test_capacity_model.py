"""scripts/capacity.py, the fleet's load model: its arithmetic on small cases worked by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "capacity.py"


def run(tmp_path: Path, *args: str) -> tuple[str, dict[str, object]]:
    out = tmp_path / "capacity.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)], capture_output=True, text=True, check=True
    )
    return done.stdout, json.loads(out.read_text())


def test_one_step_jobs_on_ten_busy_pods(tmp_path: Path) -> None:
    # 10 pods x 1 message at a time, 1 s a message, no children: 10 msg/s.
    text, data = run(
        tmp_path, "--pods", "10", "--fan-out", "0", "--no-fan-in", "--root-s", "1", "--state-ms", "0"
    )
    row = data["rows"][0]  # type: ignore[index]
    assert row["msg_per_s"] == pytest.approx(10)
    # receive 1 per message (concurrency 1), delete 1 per message (acks 1 s apart never batch),
    # one send per root, no visibility extension (1 s < 60 s / 3): 30 requests/s.
    assert row["sqs_by_action"] == pytest.approx({"receive": 10, "delete": 10, "send": 10, "visibility": 0})
    assert row["sqs_monthly_requests"] == pytest.approx(30 * 30 * 24 * 3600)
    assert row["sqs_monthly_usd"] == pytest.approx((77_760_000 - 1_000_000) / 1e6 * 0.40)
    # claim + complete per message, and each pod's registry upsert every 20 s.
    assert row["state_tx_per_s"] == pytest.approx(10 * 2 + 10 / 20)
    assert (row["pooler_client_connections"], row["pooler_server_connections"]) == (20, 1)
    assert data["pods_at_store_limit"] == pytest.approx(3000 / 2.05)
    assert data["pods_at_connection_limit_without_pooler"] == 50
    assert "stops being enough at about 1,463 busy pods" in text


def test_a_fixed_arrival_rate_with_visibility_extensions(tmp_path: Path) -> None:
    # Heartbeat every 1 s: a 2.5 s step is extended twice. 2 jobs/s offered, 4 jobs/s possible.
    _text, data = run(
        tmp_path,
        *("--pods", "10", "--fan-out", "0", "--no-fan-in", "--root-s", "2.5", "--state-ms", "0"),
        *("--visibility-s", "3", "--arrival", "2", "--queue", "fifo"),
    )
    row = data["rows"][0]  # type: ignore[index]
    assert row["jobs_per_s"] == pytest.approx(2)
    # Half the fleet idles, long-polling every 20 s: 10 x 0.5 / 20 extra receives.
    assert row["sqs_by_action"]["receive"] == pytest.approx(2 + 0.25)
    assert row["sqs_by_action"]["visibility"] == pytest.approx(4)
    assert row["state_tx_per_s"] == pytest.approx(2 * (2 + 2) + 10 / 1)
    assert row["sqs_monthly_usd"] == pytest.approx((row["sqs_monthly_requests"] - 1e6) / 1e6 * 0.50)


def test_a_wide_fan_out_saturates_its_fan_in_rows_first(tmp_path: Path) -> None:
    text, data = run(tmp_path, "--pods", "10,1000", "--fan-out", "1000", "--child-s", "0.5")
    small, large = data["rows"]  # type: ignore[misc]
    assert small["first_to_saturate"] is None
    # 1,000 siblings of one job on 1,000 pods: 2,000 completions/s against 800 measured.
    assert large["load"]["one job's fan-in rows"] == pytest.approx(2000 / 800)
    assert large["first_to_saturate"] == "one job's fan-in rows"
    assert [line.split()[0] for line in text.splitlines()[1:3]] == ["10", "1000"]
