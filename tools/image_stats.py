"""Print a prepared cache's image statistics beside ImageNet's: RGB PCA
eigenvalue ratios, luminance power-spectrum slope, pixel 5-NN label agreement
(alexnet/data/image_stats.py defines them).

    python -m tools.image_stats cache/synthetic-g4
    python -m tools.image_stats cache/mine --json        # the numbers as JSON
    python -m tools.image_stats cache/a cache/b           # several caches, one after another

Measures the cache's pixels each time (a few seconds for the embedded set;
about a minute for ILSVRC-2012, whose 5-NN uses 2,000 validation against
20,000 training images). `tools.prepare` keeps the same numbers in the cache's
meta.json ("image_stats").
Exit status: 0 done; 2 a folder is not a prepared cache.
"""

from __future__ import annotations

import argparse
import json
import sys

from alexnet.data import image_stats
from alexnet.data.cache import CacheError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.image_stats", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache", nargs="+", help="prepared cache folder(s) (python -m tools.prepare)")
    ap.add_argument("--json", action="store_true", help="print the statistics as JSON")
    args = ap.parse_args(argv)
    for path in args.cache:
        try:
            stats = image_stats.of_cache(path)
        except (CacheError, FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({"cache": path, **stats}, indent=1))
        else:
            print(f"{path}:\n{image_stats.format_stats(stats)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
