"""The import command's progress bar (handlers/progress.py) when tqdm is not installed."""

from __future__ import annotations

import io

from handlers.progress import ProgressBar


def test_the_progress_bar_without_tqdm() -> None:
    out = io.StringIO()
    bar = ProgressBar("import mem0", stream=out)
    bar._tqdm = None
    bar.update(0, 4)
    bar.update(4, 4)
    bar.close()
    assert out.getvalue().endswith("\rimport mem0 [" + "#" * 30 + "] 100% 4/4\n")
