"""Reading and writing the files a user names, with one-line errors.

Every JSON or TOML file sltui reads (run files, --config, sweep files) is read as UTF-8
through `read_text`, and every output a user points at (--out, a runs folder) is made
through `make_folder` or `write_output`, so that a file that is not text, a path that
cannot be written or a folder that cannot be made gives one line naming the path and
the reason (a ConfigError, or the class the caller asks for), never a traceback.
Standard library only.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError


def reason(exc: OSError, path: Path | None = None) -> str:
    """Why an OS call on `path` failed, in words."""
    if isinstance(exc, FileExistsError) or exc.errno == errno.EEXIST:
        return "a file of that name is in the way"
    if isinstance(exc, NotADirectoryError) or exc.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder"
    if isinstance(exc, IsADirectoryError) or exc.errno == errno.EISDIR:
        return "it is a folder"
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        if path is not None and Path(path).parent.is_dir():
            return f"{Path(path).parent} takes no new files"
        return f"{Path(path).parent} does not exist" if path is not None else "a folder on the way does not exist"
    text = exc.strerror or str(exc)
    return text[0].lower() + text[1:] if text else type(exc).__name__


def read_text(path: Path, what: str, error: type[Exception] = ConfigError,
              missing: type[Exception] | None = None) -> str:
    """The UTF-8 text of `path` (a BOM is dropped); `error("cannot read WHAT PATH: ...")`
    when it cannot be read or is not UTF-8 text. With `missing`, a file that does not
    exist raises `missing(str(path))` instead."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if missing is not None:
            raise missing(str(path)) from None
        raise error(f"cannot read {what} {path}: it does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {reason(exc, path)}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_json(path: Path, what: str, error: type[Exception] = ConfigError,
              missing: type[Exception] | None = None) -> Any:
    """`read_text`, parsed as JSON; `error` with the line of the first mistake."""
    text = read_text(path, what, error, missing)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{what} {path} is nested too deeply to read") from None


def make_folder(path: Path, what: str, error: type[Exception] = ConfigError) -> Path:
    """`path` as a folder that exists and takes new files (made with its parents if
    needed); `error("cannot use PATH as WHAT: ...")` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"cannot use {path} as {what}: it is a file, not a folder")
    probe = path / f".sltui-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot use {path} as {what}: {reason(exc, path)}") from None
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise error(f"cannot use {path} as {what}: {reason(exc, probe)}") from None
    return path


def existing_folder(path: str | Path, what: str, error: type[Exception] = ConfigError) -> Path:
    """`path` (`~` expanded) as a folder that exists, else `error("WHAT PATH does not
    exist ...")`; nothing is created (a mistyped path must not become an empty folder)."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise error(f"{what} {path} does not exist (nothing was created); give an existing folder")
    if not folder.is_dir():
        raise error(f"{what} {path} is a file, not a folder")
    return folder


def check_folder_creatable(path: Path) -> str | None:
    """Why `path` could not be made (or used) as a folder of files, None if it can,
    changing nothing on disk: the nearest existing ancestor must be a folder in which a
    folder can be made (tried with a temporary one, removed at once)."""
    path = Path(path).absolute()
    if path.exists():
        if not path.is_dir():
            return "it is a file, not a folder"
        base = path
    else:
        base = path.parent
        while not base.exists():
            base = base.parent
        if not base.is_dir():
            return f"{base} is a file, not a folder"
    probe = base / f".sltui-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return reason(exc, probe)
    return None


def write_output(path: Path, text: str, what: str = "output", error: type[Exception] = ConfigError) -> Path:
    """Write `text` (UTF-8) to a file the user named; `error("cannot write WHAT PATH: ...")`
    when that is impossible (a folder, a missing parent, a file as parent, no permission)."""
    path = Path(path)
    if path.is_dir():
        raise error(f"cannot write {what} {path}: it is a folder")
    try:
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
    except OSError as exc:
        raise error(f"cannot write {what} {path}: {reason(exc, path)}") from None
    return path
