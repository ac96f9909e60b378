"""`sisu chaos` flags are checked once, when the drill's options are built: before anything
connects, a bad choice is a validation_error."""

from __future__ import annotations

import itertools

import pytest

from sisu.drills.chaos import FAULTS, KILL_POINTS, ChaosOptions
from sisu.errors import ValidationFailed


@pytest.mark.parametrize(("kill_point", "fault"), list(itertools.product(KILL_POINTS, FAULTS)))
def test_every_kill_point_and_fault_is_accepted(kill_point: str, fault: str) -> None:
    options = ChaosOptions(3, 2, kill_point, fault, seed=7)
    assert (options.kill_point, options.fault, options.seed) == (kill_point, fault, 7)


@pytest.mark.parametrize(
    ("kill_point", "fault", "message"),
    [
        ("sometimes", "worker-kill", "--kill-point must be one of execute, after-effect, random"),
        (
            "random",
            "meteor",
            "--fault must be one of worker-kill, postgres-restart, postgres-kill, shim-kill",
        ),
    ],
    ids=["kill-point", "fault"],
)
def test_a_bad_choice_is_a_validation_error(kill_point: str, fault: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        ChaosOptions(1, 1, kill_point, fault)
    assert caught.value.exit_code == 2
    assert caught.value.envelope()["error"] == "validation_error"
    assert caught.value.message == message
