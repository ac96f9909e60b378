"""A process that plans one compile request with the llm compiler inside a DBOS workflow of its
own, as a worker's RunIntentWF does, and prints the plan as JSON. Tests run it as a subprocess
to drive the repository tools through real DBOS steps with a request that names a repository
(`repo`, `commit`) directly, and kill it mid-run; started again with the same executor id it
recovers the workflow.

    python -m tests.support.repo_tools_probe URL BASE_URL KEY EXECUTOR_ID WORKFLOW_ID REQUEST_JSON
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(url: str, base_url: str, key: str, executor_id: str, wf_id: str, request: str) -> int:
    from dbos import DBOS, SetWorkflowID
    from pydantic_ai.usage import UsageLimits

    from sisu import engine
    from sisu.workflow.steps.llm_compiler import config_from, llm_compiler

    engine.quiet_dbos_logs()
    DBOS(
        config=engine.dbos_config(  # type: ignore[arg-type]
            url, app_version="repo-tools-probe", executor_id=executor_id
        )
    )
    compiler = llm_compiler(
        config_from("openai:fake-model", base_url, key), url, max_attempts=2, backoff=0.05
    )

    @DBOS.workflow(name="RepoToolsProbeWF")
    def probe(req: dict[str, Any]) -> dict[str, Any]:
        return compiler.draft(req, lambda: UsageLimits(request_limit=10))

    DBOS.launch()  # recovers this executor's pending workflow, if a killed probe left one
    try:
        if DBOS.get_workflow_status(wf_id) is None:
            with SetWorkflowID(wf_id):
                DBOS.start_workflow(probe, json.loads(request))
        print(json.dumps(DBOS.retrieve_workflow(wf_id).get_result()))
    finally:
        DBOS.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
