"""Several writers, one folder; several threads, one model or index.

Real processes: two ``jointembed embed --index`` runs at once both end with their entries in the index; two
processes updating one index through :meth:`EmbeddingIndex.edit` keep every entry; a save waits for a process
that holds the folder's lock, or names it; another process's save in progress is never deleted; a save killed
between the two renames of its swap is put back from its backup by the next load or save. Threads: ``embed`` on
a model in training mode changes nothing of the model and gives the eval-mode vectors; searches during upserts
see whole states only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from jointembed.errors import ConcurrentWriteError
from jointembed.io import atomic_write, atomic_write_folder, folder_lock, lock_path
from jointembed.search import EmbeddingIndex

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "datasets" / "digits_four_ways"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _python(script: str, *args: str, wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run ``script`` in a new Python process (one thread, so two of them share the 2 cores fairly)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-c", textwrap.dedent(script), *args]
    if wait:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, process: subprocess.Popen | None = None) -> None:
    while not path.exists():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the helper process ended early: {process.communicate()}")
        time.sleep(0.02)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


# Both processes import everything, meet at a barrier (so they start embedding together), and take one second
# inside the index update (after reading the index, before saving it): without a lock, both read the same index
# and the second save drops the first one's entries.
_SLOW_EMBED = """
import pathlib, sys, time
import jointembed.cli
import jointembed.search.index as ix

barrier, me, *argv = sys.argv[1:]
pathlib.Path(barrier, me).touch()
while len(list(pathlib.Path(barrier).iterdir())) < 2:
    time.sleep(0.01)
add = ix.EmbeddingIndex.add

def slow_add(self, *args, **kwargs):
    time.sleep(1.0)
    return add(self, *args, **kwargs)

ix.EmbeddingIndex.add = slow_add
sys.exit(jointembed.cli.main(argv))
"""


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from jointembed.data.multimodal import MultimodalDataModule
    from jointembed.models.joint import JointEmbeddingModel
    from jointembed.registry import create_encoder, get_encoder_class

    torch.manual_seed(0)
    types = {"ids": "ids", "text": "scratch_text"}
    model = JointEmbeddingModel({f: create_encoder(n, **get_encoder_class(n).tiny_config()) for f, n in types.items()})
    data = MultimodalDataModule(train=str(DIGITS / "train.jsonl"), label_names=NAMES, batch_size=8)
    data.setup()
    data.bind(model.inputs)
    model.bind_inputs()
    return str(model.save_pretrained(tmp_path_factory.mktemp("model") / "pretrained"))


def test_two_embed_index_runs_at_once_both_keep_their_entries(text_model: str, tmp_path: Path) -> None:
    index = tmp_path / "index"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    texts = {run: [f"{run} text {i}" for i in range(5)] for run in ("first", "second")}
    runs = [
        _python(_SLOW_EMBED, str(barrier), run, "embed", "--model", text_model, "--index", str(index),
                "--no-progress", "--text", *texts[run], wait=False)
        for run in texts
    ]  # fmt: skip
    outputs = [_finish(run) for run in runs]
    assert all("+5)" in out for out in outputs), outputs
    keys = set(EmbeddingIndex.load(index).keys())
    assert keys == {f"text:{t}" for run in texts.values() for t in run}


_EDIT = """
import sys, time
import numpy as np
from jointembed.search import EmbeddingIndex

folder, me = sys.argv[1:]
rng = np.random.default_rng(int(me))
for round in range(3):
    with EmbeddingIndex.edit(folder, create=lambda: EmbeddingIndex(8)) as index:
        time.sleep(0.2)  # read, think, then write: the window another writer would fall into
        index.add(rng.standard_normal((4, 8)), [f"{me}-{round}-{i}" for i in range(4)], "text")
"""


def test_two_processes_editing_one_index_keep_every_entry(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    runs = [_python(_EDIT, str(folder), me, wait=False) for me in ("1", "2")]
    for run in runs:
        _finish(run)
    keys = set(EmbeddingIndex.load(folder).keys())
    assert keys == {f"{me}-{r}-{i}" for me in "12" for r in range(3) for i in range(4)}


_HOLD_LOCK = """
import pathlib, sys, time
from jointembed.io import folder_lock

folder, started, release = sys.argv[1:]
with folder_lock(folder):
    pathlib.Path(started).touch()
    while not pathlib.Path(release).exists():
        time.sleep(0.02)
"""


def test_a_save_waits_for_the_process_holding_the_lock_or_names_it(tmp_path: Path) -> None:
    folder, started, release = tmp_path / "index", tmp_path / "started", tmp_path / "release"
    holder = _python(_HOLD_LOCK, str(folder), str(started), str(release), wait=False)
    _wait_for(started, holder)
    index = EmbeddingIndex(4)
    index.add(np.eye(4), ["a", "b", "c", "d"], "text")
    with pytest.raises(ConcurrentWriteError, match=rf"index is being written by pid {holder.pid} on .*\(lock file"):
        index.save(folder, timeout=0.3)
    assert not folder.exists()
    told = []
    saver = threading.Thread(target=lambda: told.append(index.save(folder, timeout=60)))
    saver.start()
    time.sleep(0.3)
    assert saver.is_alive() and not told  # waiting for the holder
    release.touch()
    saver.join(60)
    _finish(holder)
    assert told == [folder] and len(EmbeddingIndex.load(folder)) == 4
    assert lock_path(folder) == tmp_path / ".index.lock" and not lock_path(folder).exists()  # beside; removed after


# A save of a folder (or a file) that stops inside its write callback until told to go on.
_SLOW_SAVE = """
import pathlib, sys, time
from jointembed.io import atomic_write, atomic_write_folder

kind, target, started, release = sys.argv[1:]

def write(path):
    (path / "config.json" if kind == "folder" else path).write_text("from the other process")
    pathlib.Path(started).touch()
    while not pathlib.Path(release).exists():
        time.sleep(0.02)

if kind == "folder":
    atomic_write_folder(target, write, marker="config.json")
else:
    atomic_write(target, write)
"""


def test_another_process_save_in_progress_is_never_deleted(tmp_path: Path) -> None:
    # a folder: the second save waits for the first (the lock), then replaces it
    folder, started, release = tmp_path / "models", tmp_path / "started", tmp_path / "release"
    other = _python(_SLOW_SAVE, "folder", str(folder), str(started), str(release), wait=False)
    _wait_for(started, other)
    mine = threading.Thread(target=atomic_write_folder, args=(folder, _write_config("mine"), "config.json"))
    mine.start()
    time.sleep(0.5)
    assert mine.is_alive()
    assert [p for p in tmp_path.glob(".models.*.tmp") if (p / "folder" / "config.json").is_file()]
    release.touch()
    _finish(other)
    mine.join(60)
    assert (folder / "config.json").read_text() == "mine"
    # a file: both writes finish; this one's clean-up leaves the other's temporary file alone
    target, started, release = tmp_path / "metrics.json", tmp_path / "started2", tmp_path / "release2"
    other = _python(_SLOW_SAVE, "file", str(target), str(started), str(release), wait=False)
    _wait_for(started, other)
    atomic_write(target, lambda tmp: tmp.write_text("mine"))
    assert len(list(tmp_path.glob(".metrics.json.*.tmp"))) == 1
    release.touch()
    _finish(other)
    assert target.read_text() == "from the other process" and not list(tmp_path.glob(".metrics.json.*.tmp"))


def _write_config(text: str):
    return lambda tmp: (tmp / "config.json").write_text(text)


# Save over an existing index and die (as kill -9 would) right after the old folder was moved aside, before the
# new one is renamed in: the second os.replace of the save.
_KILLED_SWAP = """
import os, sys
import numpy as np
from jointembed.search import EmbeddingIndex

folder = sys.argv[1]
index = EmbeddingIndex(4)
index.add(np.eye(4)[:2], ["new-a", "new-b"], "text")
replace, calls = os.replace, []

def dying_replace(*args, **kwargs):
    calls.append(args)
    if len(calls) == 2:
        os._exit(9)
    return replace(*args, **kwargs)

os.replace = dying_replace
index.save(folder)
"""


@pytest.mark.parametrize("next_step", ["load", "save"])
def test_a_save_killed_between_its_two_renames_is_put_back(tmp_path: Path, next_step: str) -> None:
    folder = tmp_path / "index"
    old = EmbeddingIndex(4)
    old.add(np.eye(4), ["a", "b", "c", "d"], "text")
    old.save(folder)
    killed = _python(_KILLED_SWAP, str(folder))
    assert killed.returncode == 9, killed.stderr
    assert not folder.exists() and len(list(tmp_path.glob(".index.*.old"))) == 1  # the only copy is the backup
    if next_step == "load":
        assert EmbeddingIndex.load(folder).keys() == ["a", "b", "c", "d"]
    else:
        fresh = EmbeddingIndex(4)
        fresh.add(np.eye(4)[:1], ["z"], "text")
        fresh.save(folder)
        assert EmbeddingIndex.load(folder).keys() == ["z"]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # our leftovers (and the killed lock file) are gone


# ----- threads ---------------------------------------------------------------------------------------------------


def _image_model():
    from jointembed.modalities import ImageModality
    from jointembed.models.joint import JointEmbeddingModel
    from jointembed.registry import create_encoder, get_encoder_class

    torch.manual_seed(0)
    encoders = {name: create_encoder(name, **get_encoder_class(name).tiny_config()) for name in ("cnn_image", "ids")}
    inputs = {"image": ImageModality(image_size=16)}
    return JointEmbeddingModel({"image": encoders["cnn_image"], "ids": encoders["ids"]}, inputs)


def test_embed_from_threads_never_changes_a_training_model() -> None:
    model = _image_model()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(24)]
    model.train()
    for _ in range(3):  # give the BatchNorm layers running statistics unlike the initial ones
        model.encoders["image"](torch.randn(8, 3, 16, 16))
    model.eval()
    expected = model.embed(image=images, batch_size=8)
    model.train()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    seen_modes = []
    model.encoders["image"].register_forward_pre_hook(lambda module, args: seen_modes.append(model.training))
    results, errors = [], []

    def embed_repeatedly() -> None:
        try:
            for _ in range(5):
                results.append(model.embed(image=images, batch_size=8))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=embed_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 20
    for result in results:
        torch.testing.assert_close(result, expected)
    assert model.training and all(m.training for m in model.modules())
    assert seen_modes and all(seen_modes)  # the model stayed in training mode while embedding, every time
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, buffers[name], msg=f"buffer {name} moved")


def test_searches_during_upserts_see_whole_entries() -> None:
    rng = np.random.default_rng(0)
    index = EmbeddingIndex(16)
    keys = [f"k{i}" for i in range(500)]
    index.add(rng.standard_normal((500, 16)), keys, "text", [{"i": i} for i in range(500)])
    queries = rng.standard_normal((8, 16)).astype(np.float32)
    stop, problems = threading.Event(), []

    def upsert() -> None:
        for round in range(60):
            chosen = rng.choice(500, 100, replace=False)
            index.add(rng.standard_normal((100, 16)), [keys[i] for i in chosen], "text", [{"round": round}] * 100)
        stop.set()

    def search() -> None:
        try:
            while not stop.is_set():
                for hits in index.search(queries, k=20):
                    if len(hits) != 20 or any(not isinstance(hit.key, str) for hit in hits):
                        problems.append([hit.key for hit in hits])
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            problems.append(repr(error))

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=upsert)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert len(index) == 500 and sorted(index.keys()) == sorted(keys)


def test_threads_of_one_process_take_turns_with_the_lock(tmp_path: Path) -> None:
    order = []

    def hold(name: str) -> None:
        with folder_lock(tmp_path / "folder"):
            order.append(f"{name} in")
            time.sleep(0.1)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    with folder_lock(tmp_path / "folder"), folder_lock(tmp_path / "folder"):  # re-entrant within a thread
        pass
