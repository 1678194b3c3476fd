"""Add ``--hash=sha256:`` entries to requirements.lock from downloaded distributions.

Usage: python tools/hash_lock.py requirements.lock DOWNLOAD_DIR
(``make lock`` downloads the pinned files with ``pip download --no-deps`` first).
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def main(lock_path: str, dist_dir: str) -> int:
    files: dict[tuple[str, str], list[Path]] = {}
    for f in Path(dist_dir).iterdir():
        stem = f.name
        if stem.endswith(".whl"):
            name, version = stem.split("-")[:2]
        else:
            m = re.match(r"(.+)-([^-]+)\.(tar\.gz|zip)$", stem)
            if not m:
                continue
            name, version = m.group(1), m.group(2)
        files.setdefault((norm(name), version.lower()), []).append(f)
    out = []
    missing = []
    for line in Path(lock_path).read_text().splitlines():
        pin = line.split("\\")[0].strip()
        if not pin or pin.startswith("#"):
            continue
        name, _, version = pin.partition("==")
        dists = files.get((norm(name), version.lower()))
        if not dists:
            missing.append(pin)
            out.append(pin)
            continue
        hashes = sorted(hashlib.sha256(d.read_bytes()).hexdigest() for d in dists)
        out.append(pin + "".join(f" \\\n    --hash=sha256:{h}" for h in hashes))
    if missing:
        print("no distribution found for: " + ", ".join(missing), file=sys.stderr)
        return 1
    Path(lock_path).write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
