"""Quiet logs: our progress at INFO, other libraries only from WARNING up."""

from __future__ import annotations

import logging

from s3a.logs import log_to


def test_library_info_is_quiet_and_ours_is_kept(tmp_path):
    path = tmp_path / "rule.log"
    with log_to(path) as log:
        log.info("ours at info")
        logging.getLogger("s3a.names").info("a module of ours")
        logging.getLogger("open_clip").info("Loading pretrained weights (library chatter)")
        logging.getLogger("httpx").warning("a library warning")
    text = path.read_text()
    assert "ours at info" in text and "a module of ours" in text and "a library warning" in text
    assert "library chatter" not in text
    assert logging.getLogger("s3a").level == logging.NOTSET  # restored
    with log_to(path, level=logging.DEBUG):
        logging.getLogger("httpx").debug("everything at debug")
    assert "everything at debug" in path.read_text()


_SCRIPT = """
import sys
from s3a.logs import log_to, UserError
with log_to(sys.argv[1]):
    raise (UserError if sys.argv[2] == "user" else RuntimeError)("the endpoint is down; set llm.on_failure")
"""


def test_a_user_error_is_one_line_without_traceback_and_others_keep_theirs(tmp_path):
    import subprocess
    import sys

    for kind, traceback in (("user", False), ("bug", True)):
        log = tmp_path / f"{kind}.log"
        run = subprocess.run([sys.executable, "-c", _SCRIPT, str(log), kind], capture_output=True, text=True)
        assert run.returncode == 1
        assert run.stderr.count("the endpoint is down") == (2 if traceback else 1), run.stderr
        assert ("Traceback" in run.stderr) == traceback
        assert log.read_text().count("the endpoint is down") == 1


def test_describe_dataset_and_model_errors_are_user_errors():
    from s3a.data.base import DatasetError
    from s3a.discover.describe import DescribeError
    from s3a.logs import UserError
    from s3a.models import ModelError

    assert all(issubclass(e, UserError) for e in (DatasetError, DescribeError, ModelError))
