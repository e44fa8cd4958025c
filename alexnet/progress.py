"""Progress bars that stay readable in a log file: redrawn often on a terminal,
every 30 s when output goes to a file or pipe."""

import sys

from tqdm import tqdm


def bar(*, enabled: bool = True, **kwargs) -> tqdm:
    tty = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.2 if tty else 30.0)
    return tqdm(disable=not enabled, dynamic_ncols=tty, **kwargs)
