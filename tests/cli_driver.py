"""Runs commands' error cases in one process: exit status and last line.

    python tests/cli_driver.py cases.json

`cases.json` maps command modules to lists of argument lists; the answer,
the last line on stdout, maps them to lists of {"status", "last_line", ...},
one per case. Cases share a process because TensorFlow's import dominates
(seconds); only commands whose flags have different names can share one.
"""

import contextlib
import importlib
import io
import json
import sys
import time

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)
from absl import flags

from ncf_tfrs import cli


def _run(main, name, args):
  flags.FLAGS.unparse_flags()
  sys.argv = [name, *args]
  err = io.StringIO()
  status = 0
  start = time.monotonic()
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
          "lines": len(lines), "seconds": round(time.monotonic() - start, 2)}


def main():
  with open(sys.argv[1]) as f:
    commands = json.load(f)
  modules = {name: importlib.import_module(name) for name in commands}
  print(json.dumps({
      name: [_run(modules[name].main, name, args) for args in cases]
      for name, cases in commands.items()}))


if __name__ == "__main__":
  main()
