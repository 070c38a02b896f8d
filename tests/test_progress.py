"""Progress of long loops reaches a job's log without a terminal: done/total, rate, ETA."""

import logging
import re

from tclsta.progress import Progress, progress


def test_progress_logs_done_total_rate_and_eta_without_a_terminal(caplog):
    with caplog.at_level(logging.INFO, logger="tclsta.progress"):
        with Progress("scoring the rgb stream", 4, interval=0) as counter:  # pytest's stderr is no terminal
            for _ in range(4):
                counter.update()
        assert list(progress([1, 2, 3], "quick")) == [1, 2, 3]  # a loop shorter than the interval logs nothing
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4, lines  # one per update (the interval is 0), none more at the end: the last said it
    assert re.fullmatch(r"scoring the rgb stream: 1/4 videos \(25%\), [\d.e+]+ videos/s, ETA \d+:\d\d:\d\d", lines[0]), lines[0]
    assert lines[-1].startswith("scoring the rgb stream: 4/4 videos (100%)") and lines[-1].endswith("ETA 0:00:00")
