"""The authors' prompt (``template2`` of their notebook), fetched at run time, never shipped.

The ``official`` prompt style sends exactly the prompt of the S3A authors: ``template2`` in cell 13 of
``sssa/ipynb/CVPR-algo.ipynb`` of ``github.com/sheng-eatamath/S3A``. Their repository has no licence,
so the text is not part of this project: it is read from the notebook on the user's machine, the way
the BREEDS hierarchy files are (:mod:`s3a.data.breeds`).

* Download: the notebook at the pinned commit (:data:`NOTEBOOK_URL`), checked against the SHA-256 of
  that file (:data:`NOTEBOOK_SHA256`), once; the extracted template is cached as JSON under
  ``resources/`` (beside the answer cache, :func:`template_cache_path`), which survives failed jobs.
* Offline: ``llm.official_notebook`` names a local copy of the notebook. It is accepted when the file
  is the pinned original or when the template extracted from it hashes to :data:`TEMPLATE_SHA256`
  (copies that differ elsewhere, e.g. with the API key of cell 13 redacted, are fine; the template is
  what is sent). Nothing is downloaded or cached then.

Extraction reads the notebook as data and never runs it: the code cells are parsed with :mod:`ast`, the
assignment ``template2 = lambda concept_list: <str> + concept_list + <str>`` is located, and its body,
a sum of string constants and the parameter, gives the text before and after the concept list
(:class:`OfficialTemplate`). :data:`TEMPLATE_SHA256` is the SHA-256 of that text rendered with
:data:`PLACEHOLDER` as the concept list.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from s3a.discover.describe.params import DescribeError
from s3a.io import atomic_path

log = logging.getLogger(__name__)

NOTEBOOK_REPO = "sheng-eatamath/S3A"
NOTEBOOK_COMMIT = "28255f939b5c5b40c312ccf86e14e21d2a0a622e"
NOTEBOOK_PATH = "sssa/ipynb/CVPR-algo.ipynb"
NOTEBOOK_URL = f"https://raw.githubusercontent.com/{NOTEBOOK_REPO}/{NOTEBOOK_COMMIT}/{NOTEBOOK_PATH}"
#: SHA-256 of the notebook file at :data:`NOTEBOOK_COMMIT` (what :data:`NOTEBOOK_URL` serves).
NOTEBOOK_SHA256 = "ffe24cd0a6ed19bb20a39a147b02718897fc67a794c737146b99c4b55c816453"
#: The notebook's variable holding the prompt it sends (``template_in_use = template2``).
TEMPLATE_NAME = "template2"
#: Stand-in for the concept list when the template is hashed.
PLACEHOLDER = "<<CONCEPT_LIST>>"
#: SHA-256 (UTF-8) of ``template2(PLACEHOLDER)``, 1,815 characters.
TEMPLATE_SHA256 = "1f3c279976e161e6574316190a1db12a93f41303a34b9102125536044ae5b358"
#: The config key of the offline copy, named in every error.
OFFLINE_KEY = "llm.official_notebook"


@dataclass(frozen=True)
class OfficialTemplate:
    """The authors' prompt around a concept list: ``prefix + concept_list + suffix``.

    Attributes:
        prefix: the text before the concept list (the one-shot example, then "Given visual concepts: ").
        suffix: the text after it ("Goal: ...", with no space before it, as in the notebook).
        source: where it came from, recorded in the metadata of ``descriptions.parquet``: ``url``,
            ``commit``, ``path``, ``notebook_sha256`` (of the file read), ``template_sha256``, and
            ``local_path`` (the offline copy, or None when downloaded).
    """

    prefix: str
    suffix: str
    source: dict[str, str | None] = field(default_factory=dict, compare=False)

    def render(self, concept_list: str) -> str:
        """The prompt for one cluster's concept list (cell 13's ``template2(concept_list)``)."""
        return self.prefix + concept_list + self.suffix

    @property
    def sha256(self) -> str:
        """SHA-256 of the template rendered with :data:`PLACEHOLDER` (compare :data:`TEMPLATE_SHA256`)."""
        return hashlib.sha256(self.render(PLACEHOLDER).encode("utf-8")).hexdigest()


def extract_template(notebook: bytes | str, name: str = TEMPLATE_NAME) -> tuple[str, str]:
    """``(prefix, suffix)`` of the one-parameter string lambda ``name`` in a notebook, without running it.

    Raises:
        ValueError: the notebook is not JSON, or has no assignment ``name = lambda x: "..." + x + "..."``
            (a sum of string constants with the parameter exactly once).
    """
    try:
        cells = json.loads(notebook)["cells"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a Jupyter notebook ({exc})") from None
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        try:
            tree = ast.parse(source if isinstance(source, str) else "".join(source))
        except SyntaxError:  # IPython magics and the like: not the cell we want
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, ast.Lambda)
            ):
                return _split_lambda(node.value, name)
    raise ValueError(f"no assignment {name} = lambda ...: ... in the notebook")


def _split_lambda(node: ast.Lambda, name: str) -> tuple[str, str]:
    params = [a.arg for a in node.args.args]
    if len(params) != 1:
        raise ValueError(f"{name} takes {len(params)} parameters; expected one (the concept list)")

    def terms(expr: ast.expr) -> list[ast.expr]:
        if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
            return terms(expr.left) + terms(expr.right)
        return [expr]

    before: list[str] = []
    after: list[str] = []
    seen = 0
    for term in terms(node.body):
        if isinstance(term, ast.Name) and term.id == params[0]:
            seen += 1
        elif isinstance(term, ast.Constant) and isinstance(term.value, str):
            (after if seen else before).append(term.value)
        else:
            raise ValueError(f"{name} is not a sum of strings and its parameter ({ast.dump(term)[:60]})")
    if seen != 1:
        raise ValueError(f"{name} uses its parameter {seen} times; expected once")
    return "".join(before), "".join(after)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _source(local_path: str | None, notebook_sha256: str) -> dict[str, str | None]:
    return {
        "template": TEMPLATE_NAME,
        "url": NOTEBOOK_URL,
        "commit": NOTEBOOK_COMMIT,
        "path": NOTEBOOK_PATH,
        "notebook_sha256": notebook_sha256,
        "template_sha256": TEMPLATE_SHA256,
        "local_path": local_path,
    }


def _urlopen(url: str, timeout: float = 60.0):
    """Open ``url`` (the one network call of this module; tests serve it from 127.0.0.1)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed https URL


def template_cache_path(cache_dir: str | os.PathLike[str]) -> Path:
    """Where the downloaded template is cached: ``<cache_dir>/official_prompt/template2-<commit>.json``."""
    return Path(cache_dir) / "official_prompt" / f"{TEMPLATE_NAME}-{NOTEBOOK_COMMIT[:12]}.json"


def _how_to() -> str:
    return (
        f"download {NOTEBOOK_URL} (SHA-256 {NOTEBOOK_SHA256}) by hand and set {OFFLINE_KEY} to its path, "
        "or use llm.prompt_style 'clean' (the project's own wording) or backend 'wordnet'"
    )


def _from_local(path: str | os.PathLike[str]) -> OfficialTemplate:
    file = Path(path).expanduser()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DescribeError(f"{OFFLINE_KEY}: cannot read the notebook {file} ({exc}); {_how_to()}") from None
    try:
        prefix, suffix = extract_template(data)
    except ValueError as exc:
        raise DescribeError(
            f"{OFFLINE_KEY}: {file} has no usable {TEMPLATE_NAME} ({exc}); expected the authors' notebook "
            f"{NOTEBOOK_PATH} at commit {NOTEBOOK_COMMIT}: {_how_to()}"
        ) from None
    template = OfficialTemplate(prefix, suffix, _source(str(file.resolve()), _sha256(data)))
    if template.sha256 != TEMPLATE_SHA256:
        raise DescribeError(
            f"{OFFLINE_KEY}: the {TEMPLATE_NAME} of {file} hashes to {template.sha256}, expected "
            f"{TEMPLATE_SHA256} (file SHA-256 {_sha256(data)}; the pinned original's is {NOTEBOOK_SHA256}); "
            f"{_how_to()}"
        )
    return template


def _read_cache(path: Path) -> OfficialTemplate | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        template = OfficialTemplate(str(data["prefix"]), str(data["suffix"]), dict(data["source"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if template.sha256 != TEMPLATE_SHA256:
        log.warning("describe: the cached official template %s does not verify; fetching it again", path)
        return None
    return template


def _download(cache: Path) -> OfficialTemplate:
    how = f"the official prompt style needs the authors' notebook {NOTEBOOK_URL}"
    log.info("describe: downloading the authors' notebook %s (once; cached as %s)", NOTEBOOK_URL, cache)
    try:
        with _urlopen(NOTEBOOK_URL) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DescribeError(f"{how}, and the download failed ({exc}); {_how_to()}") from None
    if (digest := _sha256(data)) != NOTEBOOK_SHA256:
        raise DescribeError(
            f"{how}: the downloaded file has SHA-256 {digest}, expected {NOTEBOOK_SHA256}; {_how_to()}"
        )
    try:
        prefix, suffix = extract_template(data)
    except ValueError as exc:  # cannot happen for the pinned file; kept as a clear error
        raise DescribeError(f"{how}: {exc}; {_how_to()}") from None
    template = OfficialTemplate(prefix, suffix, _source(None, digest))
    if template.sha256 != TEMPLATE_SHA256:
        raise DescribeError(
            f"{how}: its {TEMPLATE_NAME} hashes to {template.sha256}, expected {TEMPLATE_SHA256}"
        )
    payload = {"prefix": prefix, "suffix": suffix, "source": template.source}
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return template


def official_template(
    cache_dir: str | os.PathLike[str], notebook: str | os.PathLike[str] | None = None, download: bool = True
) -> OfficialTemplate:
    """The authors' ``template2``, verified (see the module docstring).

    Args:
        cache_dir: folder of the cached template (the answer cache's folder, under ``resources/``).
        notebook: a local copy of the notebook (``llm.official_notebook``); when given it is the only
            source (no download, no cache).
        download: fetch the notebook when the template is not cached (false for ``backend:
            cache-only``, which never touches the network).

    Raises:
        DescribeError: no source (download off or failed, no local copy), a hash that differs, or a file
            without the template; the message names the URL, the expected hash and ``llm.official_notebook``.
    """
    if notebook is not None:
        return _from_local(notebook)
    cache = template_cache_path(cache_dir)
    if (cached := _read_cache(cache)) is not None:
        return cached
    if not download:
        raise DescribeError(
            f"the official prompt style needs the authors' notebook, which is not cached ({cache}) and "
            f"backend 'cache-only' never downloads; {_how_to()}, or run once with backend 'openai'"
        )
    return _download(cache)
