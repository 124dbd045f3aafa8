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
