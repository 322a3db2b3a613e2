"""How every command ends: a user's mistake is one `error: ...` line.

The commands (`train`, `export`, `recommend`, `bench`, `report` and the
ml-100k converter) start through `run` instead of `absl.app.run`. A bad
flag, file, archive, request or model directory then ends the process with
one line on stderr that names what is wrong, and a non-zero status: 2 for
flags, 1 for the rest. Tracebacks are for bugs, and for `--verbose`, which
lets every error through unchanged and shows INFO logs. By default a
command logs warnings only (absl's `--verbosity` still chooses, when given):
the INFO lines of TensorFlow and TFDS, such as the renamed signature inputs
and the saver's timings at every checkpoint, say nothing a user can act on,
and what a run did is in the summary each command prints.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging

USAGE_EXIT = 2
ERROR_EXIT = 1
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report Ctrl-C.


class CommandError(Exception):
  """A failure the user can act on (diverged training, a model server's
  error, an unusable report input); its message is the line."""


def _user_errors() -> tuple[type[BaseException], ...]:
  """A user's mistake, as the package's own modules and TensorFlow raise it.

  TensorFlow's errors only where the command imported TensorFlow: the
  commands that do not (the ml-100k converter) start without it.
  """
  errors = (CommandError, ValueError, OSError)
  tf = sys.modules.get("tensorflow")
  if tf is not None:
    errors += (tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
               tf.errors.FailedPreconditionError,
               tf.errors.InvalidArgumentError, tf.errors.AlreadyExistsError)
  return errors


def check_writable_dir(flag: str, path: str) -> None:
  """Refuses a directory flag that names a file or a place not writable, as
  a usage error naming the flag, before any work is done.

  Local paths only; remote ones (gs://...) are left to their file system.
  """
  if "://" in path:
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise app.UsageError(f"--{flag}={path} is a file, not a directory.")
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise app.UsageError(f"--{flag}={path}: {existing} is a file, not a "
                         "directory.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise app.UsageError(f"--{flag}={path}: {existing} is not writable.")


def _fail(message: str, status: int) -> NoReturn:
  first = (message.strip().splitlines() or [""])[0]
  print(f"error: {first}", file=sys.stderr, flush=True)
  sys.exit(status)


def _parse_flags(argv: Sequence[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e), USAGE_EXIT)


def run(main: Callable[[list[str]], object],
        interrupted: str = "interrupted.") -> None:
  """`absl.app.run(main)`, with user errors as one line and a status.

  `interrupted` is the line for Ctrl-C (what the user can do next).

  Defines `--verbose` for the command (here, so that importing this module
  for `CommandError` defines no flag).
  """
  if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, "Show the whole error and its "
                      "traceback instead of one `error:` line, and "
                      "TensorFlow's INFO logs.")

  def guarded(argv):
    if not flags.FLAGS["verbosity"].present:
      verbose = flags.FLAGS.verbose
      absl_logging.set_verbosity(absl_logging.INFO if verbose
                                 else absl_logging.WARNING)
      logging.getLogger("tensorflow").setLevel(logging.INFO if verbose
                                               else logging.WARNING)
    try:
      return main(argv)
    except app.UsageError as e:
      if flags.FLAGS.verbose:
        raise
      _fail(str(e), USAGE_EXIT)
    except KeyboardInterrupt:
      if flags.FLAGS.verbose:
        raise
      _fail(interrupted, INTERRUPTED_EXIT)
    except _user_errors() as e:  # pylint: disable=catching-non-exception
      if flags.FLAGS.verbose:
        raise
      _fail(getattr(e, "message", None) or str(e) or type(e).__name__,
            ERROR_EXIT)

  app.run(guarded, flags_parser=_parse_flags)
