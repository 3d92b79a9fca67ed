import os
import subprocess
import sys

import pytest

from jointembed.threads import ThreadChoice, apply_thread_defaults, choose_threads, usable_cores, wait_policy_chosen


@pytest.mark.parametrize(
    ("cores", "load", "threads"),
    [
        (2, 0.0, 2),  # idle: every core
        (2, 0.49, 2),
        (2, 0.5, 2),  # half a core busy rounds up to a free core
        (2, 0.51, 1),
        (2, 1.6, 1),  # the README's "other jobs on the machine"
        (2, 16.0, 1),  # never fewer than one
        (1, 0.0, 1),
        (8, 2.4, 6),
        (8, 2.5, 6),
        (8, 2.6, 5),
        (64, 0.0, 64),
    ],
)
def test_threads_are_the_free_cores(cores, load, threads):
    choice = choose_threads(cores, load, {})
    assert choice == ThreadChoice(threads=threads, passive_wait=True, cores=cores, load=load)
    assert choice.environ() == {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "MKL_NUM_THREADS"])
def test_a_thread_count_the_user_set_stands(name):
    choice = choose_threads(2, 0.0, {name: "3"})
    assert choice.threads is None and choice.passive_wait
    assert choice.environ() == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("name", ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"])
def test_a_wait_policy_the_user_set_stands(name):
    choice = choose_threads(2, 1.6, {name: "ACTIVE"})
    assert choice.threads == 1 and not choice.passive_wait
    assert choice.environ() == {"OMP_NUM_THREADS": "1"}


def test_empty_variables_are_not_a_choice():
    assert choose_threads(2, 0.0, {"OMP_NUM_THREADS": "", "OMP_WAIT_POLICY": " "}).environ() == {
        "OMP_NUM_THREADS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def test_the_log_line_says_what_was_chosen_and_how_to_choose():
    assert choose_threads(2, 1.62, {}).describe() == (
        "jointembed: 1 intra-op thread (2 cores, load 1.6 on them), waiting threads sleep (OMP_WAIT_POLICY=PASSIVE);"
        " set OMP_NUM_THREADS to choose"
    )
    assert choose_threads(2, 0.0, {"OMP_NUM_THREADS": "2"}).describe() == (
        "jointembed: intra-op threads from OMP_NUM_THREADS/MKL_NUM_THREADS,"
        " waiting threads sleep (OMP_WAIT_POLICY=PASSIVE)"
    )
    assert choose_threads(2, 0.0, {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "ACTIVE"}).describe() == (
        "jointembed: intra-op threads from OMP_NUM_THREADS/MKL_NUM_THREADS"
    )


@pytest.mark.parametrize(("cores", "load"), [(0, 0.0), (2, -0.1), (2, float("nan"))])
def test_impossible_inputs_are_refused(cores, load):
    with pytest.raises(ValueError, match="cores >= 1"):
        choose_threads(cores, load, {})


@pytest.mark.parametrize(("cpu_max", "expected"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000", 1)])
def test_usable_cores_applies_a_cgroup_quota(tmp_path, cpu_max, expected):
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert usable_cores(tmp_path / "cpu.max") == (affinity if expected is None else min(affinity, expected))
    assert usable_cores(tmp_path / "missing") == affinity


def test_apply_writes_the_choice_into_the_environment_given():
    env = {"OMP_NUM_THREADS": "1"}
    choice = apply_thread_defaults(env)
    assert choice.threads is None and env == {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def test_the_choice_made_before_torch_starts_is_what_torch_uses():
    code = (
        "import os\n"
        "from jointembed.threads import apply_thread_defaults\n"
        "choice = apply_thread_defaults()\n"
        "import torch\n"
        "print(os.environ['OMP_WAIT_POLICY'], choice.threads, torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "GOMP_", "KMP_"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    policy, chosen, used = out.split()
    assert policy == "PASSIVE" and chosen == used


def test_wait_policy_chosen():
    assert not wait_policy_chosen({"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": ""})
    assert wait_policy_chosen({"GOMP_SPINCOUNT": "0"})
