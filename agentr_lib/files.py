"""Atomic writes: every artefact is written beside its final place and renamed into it, so a killed run never leaves
half a file or half a folder behind (DESIGN.md, "Reproducibility and resume"). The one place that does this, and
the one place that reads JSON artefacts back: one that does not parse (only outside tampering or disk trouble
makes one) is a `CorruptArtefact`, one line naming the file and how to redo it, not a traceback.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from .config import ConfigError

log = logging.getLogger(__name__)


def write_json(path: str | Path, obj) -> Path:
    """Write JSON through a temporary sibling + rename."""
    return _write_text(Path(path), json.dumps(obj, indent=1), ".json")


def write_yaml(path: str | Path, obj) -> Path:
    """Write YAML (block style, keys in the order given) through a temporary sibling + rename."""
    return _write_text(Path(path), yaml.safe_dump(obj, sort_keys=False), ".yaml")


def generic_redo_hint(path: Path) -> str:
    return "delete it and re-run the stage that made it"


class CorruptArtefact(ConfigError):
    """An artefact on disk that cannot be read: truncated, not JSON, not the shape its reader expects, a folder
    without its files. The message names it and says how to redo it: `redo`, else `redo_hint(path)`, which
    layout.py (the module that knows which stage fills which folder) sets to name the stage when it is imported."""
    redo_hint: Callable[[Path], str] = staticmethod(generic_redo_hint)

    def __init__(self, path: str | Path, problem: str, redo: str | None = None):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path} is unreadable ({problem}): {redo or CorruptArtefact.redo_hint(Path(path))}")


def read_json(path: str | Path, redo: str | None = None):
    """The JSON in `path`; CorruptArtefact (naming it, and `redo` or `redo_hint`) when it does not parse."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptArtefact(path, f"not valid JSON: {err}", redo) from None


def is_readable(path: str | Path, read: Callable[[Path], object]) -> bool:
    """Whether `read(path)` works (a resume redoes what does not): False for a missing or corrupt file, with a
    warning for the corrupt one."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        read(path)
    except CorruptArtefact as err:
        log.warning("%s is unreadable (%s): redoing it", path, err.problem)
        return False
    return True


def _write_text(path: Path, text: str, suffix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_dir(target: str | Path, write: Callable[[Path], object], replace: bool = True) -> Path:
    """`write(tmp)` fills a temporary sibling folder, which is then renamed to `target`.

    replace=True: an existing `target` is replaced (the old copy is removed only after the rename).
    replace=False: a `target` that appeared meanwhile (a concurrent builder of a cache won) is kept as it is.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".tmp-{target.name}-"))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; artefacts and caches are ordinary readable folders
        if replace and target.exists():
            old = target.with_name(f".old-{target.name}-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except OSError:
        if replace or not target.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
