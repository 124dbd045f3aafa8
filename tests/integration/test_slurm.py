"""Cluster tier: the demo's training through a real Slurm (`ci/local-slurm.sh up` stands one up on localhost).

One Slurm run proves dispatch, retries and resume, on the shortest DAG that has all three: the S3A
half of the demo (its dataset `shapes`) from the manifest to the trained student, run through
`--profile profiles/slurm` in a copy of the workflow, with the site keys (partition, account) written
into the copied profile as a site would. The run's training job is stopped twice: its first attempt by
a `scancel --signal=TERM` in the middle of an epoch (Slurm's preemption, or a user's scancel), its second
by its 1-minute time limit. That attempt is frozen (SIGSTOP) once it has resumed an epoch, as a hung
job would be, so that the limit is reached whatever the machine's speed without a training long enough
to outlast it; at the limit Slurm continues the job's processes and sends SIGTERM. The third attempt
has 30 minutes. The tests then check that every non-local job was a Slurm job that completed (the
training's last attempt), that the localrules ran in the main process, and that the retried training
ended with the weights and history of an uninterrupted one, bit for bit: the training alone, run again
locally (`--cores 2`) on a copy of the Slurm run's inputs. The rules after the training (predictions,
metrics, summary), the multi-label half and the soft accuracy's sentence model add no new way of
running a job (they are dispatched alike, and the workflow tier runs them): they are left out.

Without a reachable Slurm (no packages, not root, controller down) the tests skip with the reason;
`S3A_REQUIRE_SLURM=1` (set by CI) turns that skip into a failure.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# the Slurm run and the local training, on a loaded machine too
TIMEOUT = 1800
# the demo's dataset `shapes`, with one prompt template instead of seven (the text classifier over the
# 20K names is the longest job before the training) and no soft accuracy; 40 epochs of training
# (about 20 s on 2 idle cores, 0.5 s per epoch), so that the first two attempts are stopped during it
DEMO = [
    "--configfile",
    "config/demo.yaml",
    "--config",
    "run={'datasets': ['shapes']}",
    "evaluate={'soft_model': null}",  # no soft accuracy
    "vocabulary={'templates': 'photo', 'extra_wnids': []}",
    "train={'epochs': 40, 'batch_size': 32, 'warmup_epochs': 1, 'eval_every': 20}",
]
# what the run makes: the trained student, and every job before it
TARGET = "results/shapes/tiny/train/student.pt"
TRAINING = "results/shapes/tiny/train"
# the training job of the Slurm run: the first attempt is signalled, the second frozen until its
# 1-minute limit, the third has 30 minutes (a Python expression of the attempt, as a profile may give
# one); its memory does not grow with the attempt (the profile's 4000 MB * attempt)
RETRIES = [
    "--retries",
    "3",
    "--set-resources",
    "self_train:runtime=1 if attempt <= 2 else 30",
    "self_train:mem_mb=2000",
]
# rules the workflow declares local that the run has (others may join them): they must not reach Slurm
LOCAL_RULES = {
    "prepare_manifest",
    "build_vocabulary",
    "create_random_model",
    "describe_candidates",
}


def _query(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout


def _find_cluster() -> tuple[dict[str, str] | None, str]:
    """The partition and account to submit to, or None and why Slurm cannot be used here."""
    missing = [c for c in ("sbatch", "sinfo", "sacct", "sacctmgr") if shutil.which(c) is None]
    if missing:
        return None, f"Slurm client commands not found: {', '.join(missing)}"
    user = getpass.getuser()
    try:
        partitions = _query("sinfo", "-h", "-o", "%P %a %T").split()
        # a partition in state "up" with a node that can take jobs
        rows = [partitions[i : i + 3] for i in range(0, len(partitions), 3)]
        usable = [p for p, avail, state in rows if avail == "up" and state.rstrip("*") in ("idle", "mixed")]
        if not usable:
            return None, f"no Slurm partition with an idle node (sinfo: {rows})"
        _query("sacct", "-n", "-X", "-S", "now")
        assocs = _query("sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account").split()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = getattr(err, "stderr", "") or ""
        return None, f"Slurm does not answer ({' '.join(err.cmd)}: {str(detail).strip()[:300]})"
    default = next((p for p in usable if p.endswith("*")), usable[0])
    partition = os.environ.get("S3A_SLURM_PARTITION") or default.rstrip("*")
    account = os.environ.get("S3A_SLURM_ACCOUNT") or next((a for a in assocs if a), "")
    if not account:
        return None, f"user {user} has no Slurm account association (set S3A_SLURM_ACCOUNT)"
    return {"partition": partition, "account": account}, ""


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    found, reason = _find_cluster()
    if found is None:
        reason += "; start a local one with `sudo ci/local-slurm.sh up`"
        if os.environ.get("S3A_REQUIRE_SLURM") == "1":
            pytest.fail(f"S3A_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    return found


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "workflow", "config", "profiles"):
        src = REPO / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / item)
    return dest


def start_snakemake(args: list[str], cwd: Path) -> subprocess.Popen:
    """Snakemake from this interpreter; the venv's bin/ leads PATH, which sbatch passes on to the jobs.
    Its output goes to a file (``process.output_path``): a pipe nobody reads while the test waits would
    fill and stall it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    output_path = cwd / f"snakemake-{time.time_ns()}.out"
    with output_path.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "snakemake", *args],
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    process.output_path = output_path
    return process


def finish(process: subprocess.Popen, deadline: float) -> str:
    """Snakemake's output once it exits; past the deadline it is stopped (and cancels its jobs)."""
    try:
        process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        process.terminate()  # snakemake cancels its Slurm jobs on SIGTERM
        process.wait(timeout=120)
        output = process.output_path.read_text()
        pytest.fail(f"snakemake did not finish within {TIMEOUT} s:\n{output[-5000:]}")
    output = process.output_path.read_text()
    assert process.returncode == 0, output[-8000:]
    return output


def planned_jobs(dry_run: str) -> Counter:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = dry_run[dry_run.index("Job stats:") :].splitlines()[3:]
    counts = Counter()
    for line in table:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def job_headers(log: str) -> Counter:
    """('rule' | 'localrule', name) -> how many jobs Snakemake started that way (in its own lines: not
    in the logs of failed jobs that it shows, which hold the job's own Snakemake output)."""
    own = re.sub(r"^Logfile [^\n]*:\n={80}\n.*?^={80}$", "", log, flags=re.MULTILINE | re.DOTALL)
    return Counter(re.findall(r"^(rule|localrule) (\w+):$", own, flags=re.MULTILINE))


def sacct_jobs(run_id: str, since: str, expected: int) -> pd.DataFrame:
    """The run's Slurm jobs as sacct lists them (allocations only, in submission order), once all have
    reached accounting in a final state."""
    fields = ["JobIDRaw", "JobName", "State", "Comment", "ExitCode", "AllocCPUS"]
    deadline = time.monotonic() + 60
    while True:
        out = _query("sacct", "-X", "-n", "-P", "--name", run_id, "-S", since, "-o", ",".join(fields))
        jobs = pd.DataFrame([line.split("|") for line in out.splitlines() if line], columns=fields)
        jobs = jobs.sort_values("JobIDRaw", key=lambda ids: ids.astype(int), ignore_index=True)
        final = jobs.State.isin(["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"]).all()
        if (len(jobs) >= expected and final) or time.monotonic() > deadline:
            return jobs
        time.sleep(2)


def _resumed_an_epoch(log: Path) -> bool:
    """Whether the training attempt writing ``log`` resumed from a saved step and then ended an epoch."""
    text = log.read_text() if log.exists() else ""
    return "resuming from" in text and "INFO s3a.train.loop: epoch " in text.split("resuming from", 1)[1]


def _self_train_job() -> str | None:
    """The id of the self_train job running now (the plugin's comment names the rule), or None."""
    out = _query("squeue", "-h", "-t", "RUNNING", "-o", "%i|%k")
    ids = [line.split("|")[0] for line in out.splitlines() if "|rule_self_train" in line]
    return ids[0] if ids else None


def train_again_locally(work: Path, dest: Path) -> tuple[Path, str]:
    """The training alone, uninterrupted, in a copy of the finished Slurm run ``work``: its inputs (the
    structural labels, the images, the random model) and Snakemake's records are copied, its training
    outputs and saved state are not, and only self_train may run (``--allowed-rules``)."""
    shutil.copytree(work, dest, symlinks=True, ignore=shutil.ignore_patterns("state.pt", "*.pt.tmp"))
    shutil.rmtree(dest / TRAINING)
    args = [*DEMO, "--cores", "2", "--allowed-rules", "self_train", "--", TARGET]
    return dest, finish(start_snakemake(args, dest), time.monotonic() + TIMEOUT)


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory) -> dict:
    """The demo's `shapes` up to its training through profiles/slurm; the training job is sent SIGTERM
    after its first epoch, and its next attempt is frozen after an epoch until its 1-minute limit stops
    it. Then the training alone, run locally without interruption, is the reference."""
    import torch

    work = copy_workflow(tmp_path_factory.mktemp("slurm"))
    # the site keys go where the profile says a site puts them
    profile_path = work / "profiles" / "slurm" / "profile.yaml"
    profile = yaml.safe_load(profile_path.read_text())
    site_keys = {"slurm_partition": cluster["partition"], "slurm_account": cluster["account"]}
    profile["default-resources"].update(site_keys)
    profile_path.write_text(yaml.safe_dump(profile, sort_keys=False))
    slurm_args = ["--profile", "profiles/slurm", *DEMO]
    plan = finish(
        start_snakemake([*slurm_args, "-n", "--quiet", "rules", "--", TARGET], work), time.monotonic() + 300
    )

    deadline = time.monotonic() + TIMEOUT
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    # the demo's jobs take seconds: poll sooner than a real cluster needs
    slurm_process = start_snakemake(
        [*slurm_args, *RETRIES, "--slurm-init-seconds-before-status-checks", "2", "--", TARGET], work
    )
    state = work / "resources/train/shapes/tiny/state.pt"
    training_log = work / "logs/self_train/shapes/tiny.log"  # each attempt writes it anew
    signalled = stopped = None
    try:
        while stopped is None and time.monotonic() < deadline and slurm_process.poll() is None:
            job = _self_train_job()
            # the first attempt, after its first epoch: the training is under way
            if (
                signalled is None
                and job
                and state.exists()
                and torch.load(state, weights_only=False)["epoch"] >= 1
            ):
                _query("scancel", "--signal=TERM", job)  # Slurm's preemption, or a user's scancel
                signalled = job
            # the second, once it has resumed and finished an epoch: stopped, as a hung job makes no
            # progress, until its 1-minute limit, at which Slurm continues it and sends SIGTERM
            elif signalled and job and job != signalled and _resumed_an_epoch(training_log):
                _query("scancel", "--signal=STOP", job)
                stopped = job
            time.sleep(0.5)
        assert signalled, "the training job never reached its second epoch"
        assert stopped, "the second attempt never resumed an epoch"
        slurm_log = finish(slurm_process, deadline)
    except BaseException:
        slurm_process.terminate()
        slurm_process.wait(timeout=120)
        raise
    return {
        "plan": planned_jobs(plan),
        "slurm": (work, slurm_log, since),
        "local": train_again_locally(work, tmp_path_factory.mktemp("local") / "work"),
        "signalled": signalled,
    }


def test_every_cluster_job_ran_as_a_completed_slurm_job(runs):
    work, log, since = runs["slurm"]
    started = job_headers(log)
    remote = Counter({name: n for (kind, name), n in started.items() if kind == "rule"})
    local = Counter({name: n for (kind, name), n in started.items() if kind == "localrule"})
    # every planned job ran once: the localrules in this process, everything else through sbatch; the
    # training job once per attempt (the interrupted ones are checked by the preemption test below)
    assert remote["self_train"] == 3, started  # the signalled attempt, the timed-out one, the last one
    assert remote - Counter({"self_train": remote["self_train"] - 1}) + local == runs["plan"], (
        started,
        runs["plan"],
    )
    assert LOCAL_RULES.issubset(local), started
    assert remote and not set(remote) & LOCAL_RULES, started

    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    jobs = sacct_jobs(run_id, since, expected=remote.total())
    assert len(jobs) == remote.total(), jobs.to_string()
    # every job completed, the training in its last attempt
    training = jobs.Comment.str.startswith("rule_self_train_")
    done = jobs[~training | (jobs.index == jobs[training].index[-1])]
    assert (done.State == "COMPLETED").all(), jobs.to_string()
    assert (done.ExitCode == "0:0").all(), jobs.to_string()
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", log))
    assert submitted == set(jobs.JobIDRaw), (submitted, jobs.JobIDRaw.tolist())
    # the plugin's comment names the rule: rule_<name>[_wildcards_<values>]
    rules = Counter(re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", c).group(1) for c in jobs.Comment)
    assert rules == remote, (rules, remote)
    # a rule's threads become --cpus-per-task (the demo's embedding steps take 2)
    embed = jobs[jobs.Comment.str.startswith("rule_embed_images_")]
    assert len(embed) == remote["embed_images"] and (embed.AllocCPUS == "2").all(), jobs.to_string()


def test_a_preempted_and_a_timed_out_training_job_resume_to_identical_weights(runs):
    """scancel --signal=TERM in the middle of an epoch, then a 1-minute time limit (of an attempt
    frozen mid-training): each attempt saves the step it is in, Snakemake retries the job, and the last
    attempt ends with the weights of an uninterrupted run (the local one), bit for bit."""
    import torch

    work, log, since = runs["slurm"]
    local, reference_log = runs["local"]
    signalled = runs["signalled"]
    state = work / "resources/train/shapes/tiny/state.pt"
    reference_jobs = Counter(name for (_, name), n in job_headers(reference_log).items() for _ in range(n))
    assert reference_jobs == Counter({"self_train": 1}), reference_log[-3000:]  # the training alone

    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    out = _query(
        "sacct", "-X", "-n", "-P", "--name", run_id, "-S", since, "-o", "JobIDRaw,State,Comment,Elapsed"
    )
    attempts = [line.split("|") for line in out.splitlines() if "|rule_self_train" in line]
    states = [a[1] for a in attempts]
    assert attempts[0][0] == signalled and states[0] == "FAILED" and states[-1] == "COMPLETED", attempts
    assert states == ["FAILED", "TIMEOUT", "COMPLETED"], attempts  # the 1-minute limit stopped the second
    saved = torch.load(state, weights_only=False)["interruptions"]
    # every interrupted attempt saved the step it was in: none died before saving, none redid a step
    assert len(saved) == len(attempts) - 1 and all(s["signal"] == "SIGTERM" for s in saved), (saved, attempts)
    assert all(s["step_in_epoch"] >= 1 for s in saved), saved
    print(f"\ninterruptions: {saved}\nSlurm attempts: {attempts}")
    for name in ("student", "teacher"):
        ours = torch.load(work / f"results/shapes/tiny/train/{name}.pt")
        theirs = torch.load(local / f"results/shapes/tiny/train/{name}.pt")
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    pd.testing.assert_frame_equal(
        pd.read_parquet(work / "results/shapes/tiny/train/history.parquet"),
        pd.read_parquet(local / "results/shapes/tiny/train/history.parquet"),
    )
