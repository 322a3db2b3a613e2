"""Fresh processes for benchmark stages: each stage's peak RSS is its own.

Also what every suite records beside its figures: the machine, and medians
over repeats.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from ncf_tfrs import cli


class StageError(cli.CommandError):
  """A stage's process failed; the first line is its last line (its
  `error:` line, for the package's commands), the rest its stderr's end."""


def run_python(argv: list[str]) -> tuple[str, float, float]:
  """Runs a Python command in a fresh process: stdout, seconds, peak RSS GiB."""
  start = time.perf_counter()
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen([sys.executable] + argv, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
      err.seek(0)
      raise _failed(argv, err.read(), os.waitstatus_to_exitcode(status))
    out.seek(0)
    return out.read(), seconds, usage.ru_maxrss / 2**20  # KiB -> GiB


class Worker:
  """A Python command in a fresh process that answers requests line by line.

  `request` writes a line to its stdin and reads one JSON line back;
  `close` ends its stdin and returns its last JSON line and its peak RSS.
  Used where two processes must take turns (with different TensorFlow
  thread pools) rather than run one after the other.
  """

  def __init__(self, argv: list[str]) -> None:
    self._argv = argv
    self._err = tempfile.TemporaryFile("w+")  # pylint: disable=consider-using-with
    self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable] + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=self._err, text=True)

  def request(self, line: str = "") -> dict[str, object]:
    try:
      self._proc.stdin.write(line + "\n")
      self._proc.stdin.flush()
    except BrokenPipeError:
      pass  # It died: its stderr says why, below.
    for reply in self._proc.stdout:
      if reply.startswith("{"):  # Libraries may print lines of their own.
        return json.loads(reply)
    self._fail()

  def close(self) -> tuple[dict[str, object], float]:
    """Ends the requests; (its last JSON line, peak RSS GiB)."""
    self._proc.stdin.close()
    last = [line for line in self._proc.stdout.read().splitlines()
            if line.startswith("{")]
    _, status, usage = os.wait4(self._proc.pid, 0)
    self._proc.returncode = os.waitstatus_to_exitcode(status)
    if self._proc.returncode or not last:
      self._fail()
    self._err.close()
    return json.loads(last[-1]), usage.ru_maxrss / 2**20  # KiB -> GiB

  def kill(self) -> None:
    """Ends the process now, if it still runs (another worker failed)."""
    if self._proc.returncode is None:
      self._proc.kill()
      self._proc.wait()

  def _fail(self) -> None:
    self.kill()
    self._err.seek(0)
    raise _failed(self._argv, self._err.read(), self._proc.returncode)


def _failed(argv: list[str], stderr: str, exit_code: int) -> StageError:
  """The error of a failed command: its last line, then its stderr's end."""
  lines = [line for line in stderr.splitlines() if line.strip()]
  last = lines[-1] if lines else f"exit status {exit_code}"
  return StageError(f"`python {' '.join(argv)}` failed: {last}\n"
                    f"{stderr[-4000:]}")


def run_stage(stage: str, config: str, data_dir: str,
              *extra: str) -> dict[str, object]:
  """Runs `python -m ncf_tfrs.bench --stage=...` fresh; adds its peak RSS."""
  out, _, rss = run_python(["-m", "ncf_tfrs.bench", f"--stage={stage}",
                            f"--config={config}", f"--data_dir={data_dir}",
                            *extra])
  result = json.loads(out.strip().splitlines()[-1])
  result[f"{stage}_peak_rss_gib"] = rss
  return result


def product_config(flagfile: str, dataset: str, work_dir: str) -> str:
  """Resolves a train command flagfile into a config.json; returns its path."""
  out, _, _ = run_python(["-m", "ncf_tfrs.train", f"--flagfile={flagfile}",
                          f"--dataset={dataset}", "--print_config"])
  path = os.path.join(work_dir, "product_config.json")
  with open(path, "w") as f:
    f.write(out)
  return path


def machine() -> dict[str, object]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return {
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "cpus": os.cpu_count(),
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
      "tensorflow_datasets": tfds.__version__,
  }


def summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
  """Median, min and max of every numeric figure over repeated runs."""
  return {k: {"median": statistics.median(r[k] for r in runs),
              "min": min(r[k] for r in runs),
              "max": max(r[k] for r in runs)}
          for k in runs[0] if isinstance(runs[0][k], (int, float))}
