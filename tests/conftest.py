"""Shared fixtures (the tiny randomly initialised open_clip model, the shared real data), and the order
and priority of the slow tier's pytest-xdist processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# S3A_SHARED_DATA points elsewhere (e.g. a copy carried to a GPU machine)
SHARED_DATA = Path(os.environ.get("S3A_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random ``s3a-tiny`` checkpoint file (seed 0), as users' downloaded weights would be."""
    from s3a.models import TINY_ARCH, save_random_checkpoint

    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_random_checkpoint(TINY_ARCH, path, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_clip(tiny_checkpoint):
    """The tiny model loaded through open_clip's ``pretrained=<file>`` path, on the CPU."""
    from s3a.models import TINY_ARCH, ModelSpec, load_clip

    return load_clip(ModelSpec(TINY_ARCH, str(tiny_checkpoint)), device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


#: the modules whose tests share a whole workflow run (module fixtures: the Slurm run, the demo, the
#: photo folder), longest first
SHARED_RUNS = ("test_slurm.py", "test_workflow.py", "test_folder_run.py")


def pytest_collection_modifyitems(config, items):
    """Put the files of the shared workflow runs first, longest first (`make test`'s slow tier).

    Each pytest-xdist process takes whole files (`--dist loadfile`: a module fixture's run happens
    once), the next one in this order (`--no-loadscope-reorder`) whenever it holds fewer than two: the
    three runs start at once, one per process, the Slurm run (which mostly waits on Slurm) beside the
    two others, and the other files fill in. In one process only the order changes.
    """
    rank = {name: n for n, name in enumerate(SHARED_RUNS)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep their order


#: the niceness of a pytest-xdist process while it runs a module, and of all it starts (Snakemake runs,
#: their jobs): the demo run, the longest chain of jobs, and the Slurm run (whose jobs slurmd starts at
#: niceness 0 anyway) go first, the photo folder's run next, and the other files fill the gaps. A
#: process only ever raises its niceness (no privilege needed): its first module is its highest
#: priority. Outside pytest-xdist (one process) nothing changes.
MODULE_NICENESS = {"test_workflow.py": 0, "test_slurm.py": 0, "test_folder_run.py": 5}
OTHER_NICENESS = 10


@pytest.fixture(scope="module", autouse=True)
def _module_priority(request):
    """In a pytest-xdist process, lower the priority to the module's (see :data:`MODULE_NICENESS`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        target = MODULE_NICENESS.get(request.path.name, OTHER_NICENESS)
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if target > current:
            os.setpriority(os.PRIO_PROCESS, 0, target)
    yield
