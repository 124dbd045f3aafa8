"""The library's shape: no import cycles, the multi-label task above the core, rooms of one job."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
#: the front modules that may reach into the multi-label task (they serve both tasks)
FRONT = {"s3a.configcheck", "s3a.report"}
MAX_LINES = 420


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str], module_level: bool) -> set[str]:
    """The ``s3a`` modules ``name`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level else list(ast.walk(tree))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found |= {c for c in candidates if c in known and c != name}
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                out.append(sorted([v, *component]))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_module_level():
    known = modules()
    edges = {name: imports(name, path, set(known), module_level=True) for name, path in known.items()}
    assert cycles(edges) == []


def test_core_never_imports_the_multilabel_task():
    """s3a.multilabel builds on the core; the core (anywhere, lazily too) never imports it back."""
    known = modules()
    upward = {
        name: sorted(
            d for d in imports(name, path, set(known), module_level=False) if d.startswith("s3a.multilabel")
        )
        for name, path in known.items()
        if not name.startswith("s3a.multilabel") and name not in FRONT
    }
    assert {k: v for k, v in upward.items() if v} == {}


def test_no_library_file_is_much_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


#: the multi-label package's three layers (src/s3a/multilabel/README.md): the shared modules, the
#: three methods (each may import only the shared modules and itself), and the modules that compose
#: methods (the learner settings, the image learners, the evaluation of a stage)
ML = "s3a.multilabel"
ML_SHARED = {f"{ML}.{m}" for m in ("data", "classifier", "views", "aggregate", "losses", "metrics", "report")}
ML_METHODS = {f"{ML}.{m}" for m in ("cdul", "decoder", "openvocab")}
ML_TOP = {f"{ML}.{m}" for m in ("learners", "imagetrain", "evaluate")}


def ml_part(name: str) -> str | None:
    """The shared module, method or top module (its first two dotted parts) ``name`` belongs to."""
    part = ".".join(name.split(".")[:3])
    return part if part != ML else None


def test_every_multilabel_module_has_a_layer():
    parts = {ml_part(name) for name in modules() if name.startswith(ML + ".")}
    assert parts == ML_SHARED | ML_METHODS | ML_TOP


def test_multilabel_methods_share_only_the_shared_modules():
    """CDUL, the CLIP-Decoder and open-vocabulary multi-label never import each other (anywhere,
    lazily too) nor the top layer; the shared modules import no method and no top module."""
    known = modules()
    wrong = {}
    for name, path in known.items():
        part = ml_part(name) if name.startswith(ML + ".") else None
        if part is None:
            continue
        allowed = ML_SHARED | ({part} if part in ML_METHODS else set())
        if part in ML_TOP:
            continue
        bad = sorted(
            d for d in imports(name, path, set(known), module_level=False)
            if d.startswith(ML + ".") and ml_part(d) not in allowed
        )  # fmt: skip
        if bad:
            wrong[name] = bad
    assert wrong == {}


def test_the_layer_check_sees_a_sibling_import(tmp_path):
    """The check above would catch openvocab importing CDUL's pseudo-labels."""
    path = tmp_path / "scores.py"
    path.write_text("from s3a.multilabel.cdul.pseudolabels import init_pseudolabels\n")
    known = {f"{ML}.openvocab.scores", f"{ML}.cdul.pseudolabels"}
    found = imports(f"{ML}.openvocab.scores", path, known, module_level=False)
    assert found == {f"{ML}.cdul.pseudolabels"} and ml_part(next(iter(found))) not in ML_SHARED


def test_the_numpy_only_rules_never_import_torch():
    """init_pseudolabels and openvocab_labels (without the cluster vote) only read tables: their
    adapters' imports leave torch out (importing it costs seconds per job)."""
    import subprocess
    import sys

    scripts = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
    for rule in ("init_pseudolabels", "openvocab_labels"):
        code = (scripts / f"{rule}.py").read_text().split("if __name__")[0]
        probe = f"import sys\nexec(compile({code!r}, {rule!r}, 'exec'))\nprint('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False", rule
