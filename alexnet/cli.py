"""What the command-line programs share: one way to refuse a number that is too small."""

from __future__ import annotations

import argparse


def check_at_least(ap: argparse.ArgumentParser, args: argparse.Namespace, lows: dict[str, int]) -> None:
    """ap.error (exit 2, one line naming the flag) for any args.<name> below its bound; None is not
    checked."""
    for name, low in lows.items():
        v = getattr(args, name, None)
        if v is not None and v < low:
            ap.error(f"--{name.replace('_', '-')}={v}: must be at least {low}")
