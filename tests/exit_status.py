"""`python -m tests.exit_status FILE ARGS...`: `python -m alexnet.train ARGS...`, and its exit status
written to FILE as well. Under torchrun, an agent that was itself signalled reports no status of its
workers (it raises SignalException and exits 1): the preemption tests read each node's status here."""

import sys
from pathlib import Path

from alexnet import train


def main() -> int:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    code = 1  # an exception other than SystemExit
    try:
        code = train.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        raise
    finally:
        out.write_text(f"{code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
