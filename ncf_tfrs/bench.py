r"""Benchmarks: each suite prints a table and writes JSON.

  python -m ncf_tfrs.bench --suite data --config synthetic-32m --repeats 3

The data suite times the path from MovieLens to training batches, per config:
prepare (generate or parse, and write TFDS), load (TFDS -> flat columns),
split, and one pass of training batches; and, as the baseline measured in the
same run, one pass of the notebook's input pipeline (from_tensor_slices,
shuffle over the whole split, batch 256) on the same training split. Each
stage runs in a fresh process, so its peak RSS is its own; with no --data_dir
each repetition prepares from scratch. Figures are medians over repeats.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_SUITE = flags.DEFINE_enum("suite", "data", ["data"], "Benchmark suite to run.")
_CONFIGS = flags.DEFINE_list(
    "config", ["synthetic-small"],
    "movielens_users configs to measure, e.g. synthetic-small,synthetic-32m.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repetitions; medians are "
                                "reported.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir. Default: a fresh temporary directory, so "
    "that prepare is measured from scratch.")
_OUTPUT = flags.DEFINE_string("output", "bench_data.json", "JSON output path.")
_NOTEBOOK = flags.DEFINE_bool(
    "notebook", True, "Also time the notebook's input pipeline (the baseline).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16384, "Training batch size.")
_STAGE = flags.DEFINE_enum(
    "stage", None, ["prepare", "pipeline", "notebook"],
    "Internal: run one stage of one repetition of --config, print its JSON.")


def _stage(stage: str, config: str, data_dir: str,
           batch_size: int) -> dict[str, float]:
  """One stage of one repetition, in this (fresh) process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import pipeline  # pylint: disable=g-import-not-at-top

  if stage == "prepare":
    start = time.perf_counter()
    pipeline.prepare(config, data_dir=data_dir, download=False)
    return {"prepare_s": time.perf_counter() - start}

  out = {}
  start = time.perf_counter()
  ratings = pipeline.load(config, data_dir=data_dir)
  out["load_s"] = time.perf_counter() - start
  out["ratings"] = len(ratings)
  start = time.perf_counter()
  train, _ = pipeline.split(ratings, "random")
  out["split_s"] = time.perf_counter() - start
  del ratings

  if stage == "notebook":
    # The notebook's input pipeline on the same split: (user, movie) codes
    # (its pandas mapping left out, in its favour), from_tensor_slices,
    # shuffle over the whole split, batch 256; one full pass.
    start = time.perf_counter()
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.stack([train.user, train.movie], axis=1), train.liked))
    ds = ds.shuffle(len(train)).batch(256).map(
        lambda x, y: ({"user_id": x[:, 0], "item_id": x[:, 1]}, y))
    seen = sum(int(y.shape[0]) for _, y in ds)
    seconds = time.perf_counter() - start
    return {"notebook_epoch_s": seconds,
            "notebook_ratings_per_s": seen / seconds}

  start = time.perf_counter()
  seen = 0
  for batch in pipeline.make_dataset(train, batch_size):
    seen += int(batch["liked"].shape[0])
  out["epoch_s"] = time.perf_counter() - start
  out["epoch_ratings_per_s"] = seen / out["epoch_s"]
  out["full_pass_ratings_per_s"] = out["ratings"] / (
      out["load_s"] + out["split_s"] + out["epoch_s"])
  return out


def _run_stage(stage: str, config: str, data_dir: str) -> dict[str, float]:
  """Runs a stage in a fresh process; adds that process's peak RSS."""
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncf_tfrs.bench", f"--stage={stage}",
         f"--config={config}", f"--data_dir={data_dir}",
         f"--batch_size={_BATCH_SIZE.value}"],
        stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
      err.seek(0)
      raise RuntimeError(f"bench stage {stage} of {config} failed:\n"
                         f"{err.read()[-4000:]}")
    out.seek(0)
    result = json.loads(out.read().strip().splitlines()[-1])
  result[f"{stage}_peak_rss_gib"] = usage.ru_maxrss / 2**20  # KiB -> GiB
  return result


def _repetition(config: str, data_dir: str) -> dict[str, float]:
  result = _run_stage("prepare", config, data_dir)
  result.update(_run_stage("pipeline", config, data_dir))
  if _NOTEBOOK.value:
    notebook = _run_stage("notebook", config, data_dir)
    result["notebook_ratings_per_s"] = notebook["notebook_ratings_per_s"]
    result["notebook_peak_rss_gib"] = notebook["notebook_peak_rss_gib"]
    result["epoch_speedup_vs_notebook"] = (result["epoch_ratings_per_s"] /
                                           result["notebook_ratings_per_s"])
  return result


def _machine() -> dict[str, object]:
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


_COLUMNS = ("prepare_s", "prepare_peak_rss_gib", "load_s", "split_s",
            "epoch_s", "epoch_ratings_per_s", "full_pass_ratings_per_s",
            "pipeline_peak_rss_gib", "notebook_ratings_per_s",
            "epoch_speedup_vs_notebook")


def _summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
  return {k: {"median": statistics.median(r[k] for r in runs),
              "min": min(r[k] for r in runs),
              "max": max(r[k] for r in runs)}
          for k in runs[0] if isinstance(runs[0][k], (int, float))}


def _data_suite() -> dict[str, object]:
  results = {}
  for config in _CONFIGS.value:
    runs = []
    for i in range(_REPEATS.value):
      data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
      try:
        runs.append(_repetition(config, data_dir))
      finally:
        if not _DATA_DIR.value:
          shutil.rmtree(data_dir, ignore_errors=True)
      print(f"{config} run {i + 1}: " + ", ".join(
          f"{k}={v:.3g}" for k, v in runs[-1].items()), flush=True)
    results[config] = {"runs": runs, "summary": _summarize(runs)}
  return results


def _print_table(results: dict[str, object]) -> None:
  header = ["config", "ratings"] + list(_COLUMNS)
  print("\nmedians over repeats:")
  print(" | ".join(header))
  for config, res in results.items():
    s = res["summary"]
    print(" | ".join([config, f"{s['ratings']['median']:,.0f}"] +
                     [f"{s[k]['median']:,.3g}" if k in s else "-"
                      for k in _COLUMNS]))


def main(argv):
  del argv
  if _STAGE.value:
    print(json.dumps(_stage(_STAGE.value, _CONFIGS.value[0], _DATA_DIR.value,
                            _BATCH_SIZE.value)))
    return
  results = _data_suite()
  _print_table(results)
  report = {
      "suite": _SUITE.value,
      "command": " ".join(["python -m ncf_tfrs.bench"] + sys.argv[1:]),
      "machine": _machine(),
      "repeats": _REPEATS.value,
      "batch_size": _BATCH_SIZE.value,
      "results": results,
  }
  with open(_OUTPUT.value, "w") as f:
    json.dump(report, f, indent=2)
  print(f"\nwrote {_OUTPUT.value}")


if __name__ == "__main__":
  import ncf_tfrs  # pylint: disable=g-import-not-at-top,unused-import
  app.run(main)
