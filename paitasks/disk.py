"""Files that other processes may read while they are written, and paths to remove.

A state file (`.paitasks/report.json`, the hash cache, a build's record...) is written
whole or not at all: to a file of its own first, then renamed over the old one, so a
reader never sees half of it; one that cannot be read is taken as empty (state files
only save time). A path is removed whatever it is (a folder, a file, a
link, which is removed itself and never followed).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import Any


def write_atomically(path: Path, text: str) -> None:
    """`path` holds `text` once this returns, and never a part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_json(path: Path, data: Any, indent: int | None = 1) -> None:
    """`data` as JSON (keys sorted), written atomically."""
    write_atomically(path, json.dumps(data, indent=indent, sort_keys=True) + "\n")


def read_json(path: Path | None) -> dict[str, Any]:
    """The JSON object in state file `path`; {} when there is none or it is unreadable."""
    try:
        found = json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def remove(path: Path) -> bool:
    """Remove `path` (a link itself, never what it points to); whether it was there."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False
