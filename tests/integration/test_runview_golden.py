"""The RunView of a real run, normalised (ids, times, digests, workspace paths), against the golden
file tests/unit/golden/runview.json: key order, step list, artifacts and the deterministic
compiler's output. Regenerate deliberately with SISU_UPDATE_GOLDEN=1."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sisu.contracts.runs import IntentCreate, RunRequest
from sisu.service import intents, views
from sisu.service.backend import Backend
from tests.support.runs import wait_run_done
from tests.support.runview import assert_runview_shape, normalise_runview
from tests.support.workers import running_worker, worker_home

GOLDEN = Path(__file__).parent.parent / "unit" / "golden" / "runview.json"


def test_runview_of_a_real_run_matches_the_golden_file(db_url: str, tmp_path: Path) -> None:
    backend = Backend(db_url, app_version="v1")
    try:
        intent_id = intents.create_intent(
            backend, IntentCreate(goal="golden: greet the outside system", inputs={"tasks": 2})
        ).intent_id
        with running_worker(db_url, tmp_path) as worker:
            intents.start_run(backend, intent_id, RunRequest(trace_id="golden-1"))
            wait_run_done(db_url, intent_id, worker=worker)
        view = json.loads(views.get_run(backend, intent_id).to_json())
    finally:
        backend.close()

    assert_runview_shape(view)
    actual = normalise_runview(
        view, run_id=intent_id, workspaces=worker_home(tmp_path) / "workspaces"
    )
    if os.environ.get("SISU_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    expected = json.loads(GOLDEN.read_text())
    # Compare the key order too, not just the contents: dicts compare equal in any order.
    assert json.dumps(actual, indent=2) == json.dumps(expected, indent=2)
