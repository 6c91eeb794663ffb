"""A secret written to a file only its owner can read: the demo's API key, the generated first admin key.

The file is written under a temporary name created 0600 and renamed over the target, so the secret is
never readable by others, not even for a moment, and a crash leaves the old file or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path

KEY_FILE_MODE = 0o600


def write_key_file(path: Path, raw: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(descriptor, KEY_FILE_MODE)  # a leftover temporary file keeps its old mode under O_TRUNC
        os.write(descriptor, (raw + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
