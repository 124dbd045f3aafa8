"""workflow/envs/s3a.yaml, the conda environment of every rule, pins what constraints.txt pins.

The environment is Python (the tested minor version) and this package installed by pip, with every
package the installed library needs at run time (its dependencies and the soft/offline-soft extras,
followed through the installed distributions' metadata) at its exact version in constraints.txt.
After changing constraints.txt or pyproject.toml, regenerate it with
``python tests/unit/test_conda_env.py > workflow/envs/s3a.yaml``.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
ENV_FILE = REPO / "workflow" / "envs" / "s3a.yaml"
#: the extras a rule needs (the soft metric and its offline model); dev tools stay out
EXTRAS = ("soft", "offline-soft")
#: pip installs the checkout itself; conda runs pip in the env file's folder, so ../.. is the repository
PACKAGE = f"--editable ../..[{','.join(EXTRAS)}]"
HEADER = """\
# The software of every rule with `snakemake --software-deployment-method conda` (the Snakefile's
# global `conda:` directive): Python and this package, installed by pip with the exact tested versions
# of constraints.txt. Generated: `python tests/unit/test_conda_env.py > workflow/envs/s3a.yaml`;
# tests/unit/test_conda_env.py keeps it in step with constraints.txt and pyproject.toml.
"""


def constraints() -> dict[str, tuple[str, str]]:
    """Canonical name -> (name as written, version) of every pin in constraints.txt."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if m := re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line.strip()):
            pins[canonicalize_name(m.group(1))] = (m.group(1), m.group(3))
    return pins


def runtime_packages() -> set[str]:
    """Canonical names of the installed distributions the library needs at run time."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    todo += [Requirement(r) for extra in EXTRAS for r in project["optional-dependencies"][extra]]
    seen: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        name, extras = canonicalize_name(req.name), frozenset(req.extras)
        if (name, extras) in done:
            continue
        done.add((name, extras))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:  # not for this platform
            continue
        seen.add(name)
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append(sub)
    return seen


def render() -> str:
    """The environment file for the installed, tested package set."""
    pins = constraints()
    packages = sorted((pins[n] for n in runtime_packages() if n in pins), key=lambda p: p[0].lower())
    env = {
        "channels": ["conda-forge", "nodefaults"],
        "dependencies": [
            f"python={sys.version_info.major}.{sys.version_info.minor}",
            "pip",
            {"pip": [PACKAGE, *(f"{name}=={version}" for name, version in packages)]},
        ],
    }
    return HEADER + yaml.safe_dump(env, sort_keys=False, default_flow_style=False)


def test_env_file_is_the_generated_one():
    assert ENV_FILE.read_text() == render(), (
        "workflow/envs/s3a.yaml is out of step with constraints.txt / pyproject.toml; regenerate it: "
        "python tests/unit/test_conda_env.py > workflow/envs/s3a.yaml"
    )


def test_env_pins_every_runtime_package_at_its_constraint():
    env = yaml.safe_load(ENV_FILE.read_text())
    python, pip_tool, pip = env["dependencies"]
    assert python == f"python={sys.version_info.major}.{sys.version_info.minor}" and pip_tool == "pip"
    assert pip["pip"][0] == PACKAGE and (ENV_FILE.parent / "../.." / "pyproject.toml").resolve().is_file()
    pinned = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier) for r in pip["pip"][1:]}
    expected = {name: f"=={version}" for name, (_, version) in constraints().items()}
    assert all(expected[name] == spec for name, spec in pinned.items())  # every pin is the tested one
    for name in ("torch", "torchvision", "open-clip-torch", "openai", "snakemake", "sentence-transformers"):
        assert pinned[name] == expected[name], name
    assert "pytest" not in pinned and "ruff" not in pinned  # development tools stay out


def test_the_snakefile_gives_every_rule_the_env():
    assert re.search(r'^conda: "workflow/envs/s3a.yaml"$', (REPO / "Snakefile").read_text(), re.MULTILINE)


if __name__ == "__main__":
    sys.stdout.write(render())
