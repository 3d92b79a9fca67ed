"""Test-session settings that must be in place before torch is imported.

OpenMP threads that spin while they wait made the suite several times slower on a machine busy with other work
(tests/tasks and tests/data/test_recommendation.py at load 5-6 on 2 cores: 152-191 s with torch's defaults,
13-29 s with waiting threads asleep). So, as the ``jointembed`` console script does, waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) unless the environment chose otherwise. The thread count is left alone, so tests see
the same numbers as before.
"""

import os
import sys

from jointembed.threads import wait_policy_chosen

_SET_HERE = "torch" not in sys.modules and not wait_policy_chosen(os.environ)
if _SET_HERE:  # read once, when the OpenMP runtime starts: only before torch is imported
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def pytest_report_header() -> str:
    policy = os.environ.get("OMP_WAIT_POLICY", "torch's default")
    return f"OpenMP wait policy: {policy}" + (" (set by tests/conftest.py)" if _SET_HERE else "")
