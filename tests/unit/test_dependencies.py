"""pyproject.toml declares ranges; constraints.txt is the exact tested set inside them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
REPO = Path(__file__).resolve().parents[1].parent


def pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    found = [re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip()) for line in lines]
    return {canonicalize_name(m.group(1).split("[")[0]): m.group(2) for m in found if m}


def test_constraints_pin_the_tested_torch_and_satisfy_every_range():
    pinned = pins()
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    requirements = [*project["dependencies"], *extras["soft"], *extras["offline-soft"], *dev]
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{name} has no exact version in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} not in {req}"


def test_library_declares_ranges_and_bounds_open_clip():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if "==" in d], "pyproject.toml declares ranges only"
    open_clip = next(Requirement(d) for d in project["dependencies"] if d.startswith("open_clip_torch"))
    assert not open_clip.specifier.contains("4.0"), "open_clip_torch needs an upper bound (<4)"


def test_development_tools_are_a_dependency_group_that_make_installs():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    dev = {canonicalize_name(Requirement(r).name) for r in pyproject["dependency-groups"]["dev"]}
    tools = {"pytest", "ruff", "snakefmt"}
    assert tools <= dev
    extras = pyproject["project"]["optional-dependencies"]
    assert not tools & {canonicalize_name(Requirement(r).name) for reqs in extras.values() for r in reqs}
    makefile = (REPO / "Makefile").read_text()
    assert "--group dev" in makefile and "-c constraints.txt" in makefile
    assert "'pip>=25.1'" in makefile  # the first pip that knows --group
