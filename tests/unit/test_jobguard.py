"""A training worker dies with its job, and a second trainer on the same state refuses to start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from s3a.jobguard import StateLockedError, hold_state_lock
from tests.unit.test_train import FAST, cli_args, paths_for, world  # noqa: F401 - the module's fixture


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] not in "ZX"  # a zombie is gone, awaiting its reaper
    except FileNotFoundError:
        return False


def _wait(predicate, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_second_trainer_on_a_held_state_stops_with_one_line(tmp_path, capsys):
    from s3a.train.__main__ import main

    state = tmp_path / "resources" / "train" / "photos" / "tiny" / "state.pt"
    inputs = {
        name: tmp_path / f"{name}.parquet" for name in ("manifest", "vocabulary", "classifier", "labels")
    }
    for path in inputs.values():
        path.write_text("checked for existence only, before the lock")
    args = ["--state", str(state), "--manifest", str(inputs["manifest"]),
            "--vocabulary", str(inputs["vocabulary"]), "--classifier", str(inputs["classifier"]),
            "--structural-labels", str(inputs["labels"]), "--student", "a", "--teacher", "b",
            "--history", "h", "--test-epochs", "t", "--model", '{"arch": "s3a-tiny"}',
            "--device", "cpu"]  # fmt: skip
    with hold_state_lock(state):
        assert main(args) == 1
    assert capsys.readouterr().err == (
        f"python -m s3a.train: another trainer (process {os.getpid()}) is training on {state}; wait for it "
        f"to finish or stop it (kill {os.getpid()}), then run again\n"
    )
    # released with its holder: the same command now gets past the lock (and stops at its inputs)
    with pytest.raises(Exception) as error:
        main(args)
    assert not isinstance(error.value, StateLockedError)


@pytest.mark.slow
def test_torchrun_worker_dies_with_its_job_and_blocks_a_second_trainer(world):  # noqa: F811
    root, spec = world
    paths = paths_for(root, "guarded")
    command = [sys.executable, "-m", "s3a.train", *cli_args(paths, spec, {**FAST, "epochs": 200})]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=1",
        *command[1:],
    ]
    # the job: its own process group, as Snakemake's shell job is
    job = subprocess.Popen(
        torchrun, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    lock = Path(f"{paths.state}.lock")
    worker = 0
    try:
        assert _wait(lambda: lock.is_file() and lock.read_text().strip().isdigit(), 120), "no worker started"
        worker = int(lock.read_text())
        assert worker != job.pid and _alive(worker)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1 and f"another trainer (process {worker})" in second.stderr
        os.killpg(job.pid, signal.SIGKILL)  # a hard kill of the job: torchrun goes without cleaning up
        job.wait(timeout=30)
        assert _wait(lambda: not _alive(worker), 30), f"worker {worker} outlived torchrun"
    finally:
        for pid in (job.pid, worker):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
