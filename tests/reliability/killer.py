"""`python -m tests.reliability.killer POINT N ARGS...`: run `sqft ARGS` and SIGKILL this process at the N-th
time it reaches POINT, as a user's kill -9 (or the OOM killer) would, at a chosen moment:

- `tmpdir`: just after the temporary output directory (`.NAME.tmp-*`) appears;
- `manifest`: just before `sqft.json` is written (the weights are in the temporary directory);
- `commit`: just before the temporary output is renamed into place;
- `swap`: between the two renames of an `--overwrite` (the old output moved aside, the new one not yet in);
- `checkpoint`: while a fine-tuning checkpoint is half written (adapter state saved, optimizer not yet).
"""

from __future__ import annotations

import os
import pathlib
import signal
import sys
import tempfile


def _counter(n: int):
    seen = [0]

    def hit() -> None:
        seen[0] += 1
        if seen[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)

    return hit


def install(point: str, n: int) -> None:
    hit = _counter(n)
    if point == "tmpdir":
        mkdtemp = tempfile.mkdtemp

        def _mkdtemp(*args, **kwargs):
            d = mkdtemp(*args, **kwargs)
            if ".tmp-" in os.path.basename(d) and "probe" not in os.path.basename(d):
                hit()
            return d

        tempfile.mkdtemp = _mkdtemp
    elif point == "manifest":
        write_text = pathlib.Path.write_text

        def _write_text(self, *args, **kwargs):
            if self.name == "sqft.json":
                hit()
            return write_text(self, *args, **kwargs)

        pathlib.Path.write_text = _write_text
    elif point in ("commit", "swap"):
        replace = os.replace

        def _replace(src, dst, *args, **kwargs):
            if point == "commit" and ".tmp-" in os.path.basename(str(src)):
                hit()
            out = replace(src, dst, *args, **kwargs)
            if point == "swap" and ".old-" in os.path.basename(str(dst)):
                hit()
            return out

        os.replace = _replace
    elif point == "checkpoint":
        import torch

        save = torch.save

        def _save(obj, f, *args, **kwargs):
            if str(f).endswith("optimizer.pt"):
                hit()
            return save(obj, f, *args, **kwargs)

        torch.save = _save
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]))
    from sqft.cli import main

    sys.exit(main(sys.argv[3:]))
