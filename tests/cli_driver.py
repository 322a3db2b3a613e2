"""Runs one command's error cases in one process: exit status and last line.

    python tests/cli_driver.py ncf_tfrs.recommend cases.json

`cases.json` is a list of argument lists; the answer on stdout is a JSON list
of {"status", "last_line"}, one per case. A process per command, not per
case, because TensorFlow's import dominates (seconds); commands cannot share
one because some of their flags have the same names.
"""

import contextlib
import importlib
import io
import json
import sys

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)
from absl import flags

from ncf_tfrs import cli


def _run(main, name, args):
  flags.FLAGS.unparse_flags()
  sys.argv = [name, *args]
  err = io.StringIO()
  status = 0
  with contextlib.redirect_stderr(err):
    try:
      cli.run(main)
    except SystemExit as e:
      status = e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # pylint: disable=broad-except
      print(f"UNCAUGHT {type(e).__name__}: {e}", file=err)
      status = "uncaught"
  lines = [l for l in err.getvalue().splitlines() if l.strip()]
  return {"status": status, "last_line": lines[-1] if lines else "",
          "lines": len(lines)}


def main():
  module = importlib.import_module(sys.argv[1])
  with open(sys.argv[2]) as f:
    cases = json.load(f)
  results = [_run(module.main, sys.argv[1], args) for args in cases]
  print(json.dumps(results))


if __name__ == "__main__":
  main()
