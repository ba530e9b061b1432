"""What the ``lqflow`` subcommands share: model/input options, input loading, tables."""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
from pathlib import Path

from lqir.fileio import read_npy, require_file

__all__ = ["UsageError", "add_model_io", "inputs_from_args", "load_inputs", "dataset_split", "input_paths", "positive_int",
           "positive_float", "check_output_file", "check_output_folder", "describe_os_error", "print_table"]


class UsageError(ValueError):
    """A mistake in the command line (an option, an output path); ``main`` prints it in one line."""


def positive_int(text):
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def positive_float(text):
    """argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


# --- output paths: checked before any work, so that a mistake costs nothing and loses nothing ---

def check_output_file(path, option, inputs=()):
    """Refuse an output file that cannot be written, or that is one of ``inputs``.

    Checked before the command does any work: ``path`` must not be a folder, no parent
    may be a file, the nearest existing folder must accept a new file, and ``path`` must
    not be (or link to) an input, which writing it would replace.
    """
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give the name of a file to write")
    for source in inputs:
        if source is not None and _same_file(path, source):
            raise UsageError(f"{option} {path}: is the input {source}; writing it would destroy the input, "
                             "give another file name")
    _check_creatable(path.parent, option, path)
    return path


def check_output_folder(path, option, inputs=()):
    """Refuse an output folder that is a file (an input, maybe) or that cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        clash = next((s for s in inputs if s is not None and _same_file(path, s)), None)
        what = f"the input {clash}" if clash is not None else "an existing file"
        raise UsageError(f"{option} {path}: is {what}, not a folder; give a folder to write into")
    _check_creatable(path, option, path)
    return path


def _same_file(a, b):
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_creatable(folder, option, path):
    """The nearest existing folder of ``folder`` (itself or an ancestor) accepts a new file."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder")
    try:  # the same kind of write as lqir.atomic_open: a temp file in the folder
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".lqflow-probe.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write in {existing} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def describe_os_error(exc):
    """One line for an OSError: the file it concerns (not our temp file) and the reason."""
    names = []
    for name in (exc.filename, exc.filename2):
        if name is not None:
            name = Path(os.fsdecode(name))
            match = _TEMP_NAME.match(name.name)
            names.append(str(name.with_name(match["name"]) if match else name))
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(dict.fromkeys(names))}: {reason}" if names else reason


def add_model_io(p):
    """The model argument and the ``--inputs/--save`` or ``--dataset/--split`` options."""
    p.add_argument("model", type=Path, help="IR file (.lqir.npz)")
    p.add_argument("--inputs", type=Path, help="X.npy: int level indices [B, *input.shape]")
    p.add_argument("--save", type=Path, help="OUT.npy: int64 final accumulators [B, classes]")
    p.add_argument("--dataset", default="digits", help="dataset to evaluate when no --inputs (default digits)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="default: test")
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the one in the model's meta)")


def load_inputs(path):
    """A user's ``X.npy`` of level indices, read without pickles (header checked first)."""
    path = require_file(path, f"--inputs {path}: is a folder, not a .npy file", f"--inputs {path}: no such file",
                        UsageError)
    try:
        return read_npy(path)
    except (OSError, ValueError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValueError(f"--inputs {path}: not a readable .npy array of level indices: {text}") from None


def dataset_split(model, dataset, split, seed):
    """The inputs and labels of a dataset split, checked against the model's input."""
    from models.data import load_dataset

    recorded = model.meta.get("dataset") if isinstance(model.meta.get("dataset"), dict) else {}
    seed = recorded.get("seed", 0) if seed is None else seed
    # the input quantizer the model was trained with, when it is evaluated on that dataset
    in_bits = recorded.get("in_bits") if recorded.get("name") in (dataset, Path(dataset).name) else None
    x, y = load_dataset(dataset, seed=seed, in_bits=in_bits).split(split)
    if tuple(x.shape[1:]) != model.input.shape:
        raise ValueError(f"dataset {dataset!r} has inputs {list(x.shape[1:])}, the model expects {list(model.input.shape)}")
    return x, y


def input_paths(args):
    """The files a model/input command reads (to refuse an output onto one of them)."""
    paths = [args.model, args.inputs]
    if args.inputs is None and str(args.dataset).endswith(".npz"):
        paths.append(Path(args.dataset))
    return [p for p in paths if p is not None]


def inputs_from_args(model, args):
    """``(x, labels)`` from ``--inputs X.npy`` (labels None) or else ``--dataset``/``--split``."""
    if args.inputs is not None:
        return load_inputs(args.inputs), None
    return dataset_split(model, args.dataset, args.split, args.seed)


def print_table(title, header, rows):
    """A rich table on the terminal (plain lines if rich is missing)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency; plain text keeps the CLI usable without it
        print(title)
        for row in rows:
            print("  " + " | ".join(map(str, row)))
        return
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*map(str, row))
    Console().print(table)
