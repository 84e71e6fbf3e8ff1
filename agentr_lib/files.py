"""Atomic writes: every artefact is written beside its final place and renamed into it, so a killed run never leaves
half a file or half a folder behind (DESIGN.md, "Reproducibility and resume"). The one place that does this.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml


def write_json(path: str | Path, obj) -> Path:
    """Write JSON through a temporary sibling + rename."""
    return _write_text(Path(path), json.dumps(obj, indent=1), ".json")


def write_yaml(path: str | Path, obj) -> Path:
    """Write YAML (block style, keys in the order given) through a temporary sibling + rename."""
    return _write_text(Path(path), yaml.safe_dump(obj, sort_keys=False), ".yaml")


def read_json(path: str | Path):
    with open(path) as f:
        return json.load(f)


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
