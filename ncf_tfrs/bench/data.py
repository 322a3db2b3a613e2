"""Data benchmark: MovieLens to training batches, against the notebook's pipeline.

Per config and repetition, each stage in a fresh process: prepare (generate
or parse, and write TFDS), load (TFDS -> flat columns), split, and one pass
of training batches; against one pass of the notebook's input pipeline
(from_tensor_slices, shuffle over the whole split, batch 256) on the same
split. With no data_dir each repetition prepares from scratch.

With `csv`, a synthetic config is also written as the GroupLens CSV release
of its size (synthetic-32m as ml-32m: ratings.csv and movies.csv) and
prepared from those files through the parser real releases go through, as
the train command's --manual_dir does; load and split follow, and the
baseline is a bare pandas read of the same files, grouped by user.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from ncf_tfrs.bench import process

# The real release each synthetic config is written as, for `csv`.
CSV_RELEASES = {"synthetic-small": "latest-small", "synthetic-32m": "32m"}
# Per config, upper bounds on medians (an ml-32m-format archive on 2 cores).
TARGETS = {"synthetic-32m": {
    "csv_prepare_s": 90, "csv_prepare_vs_pandas": 2.0,
    "csv_prepare_peak_rss_gib": 5.0, "csv_load_split_s": 20}}

COLUMNS = ("prepare_s", "prepare_peak_rss_gib", "load_s", "split_s",
           "epoch_s", "epoch_ratings_per_s", "full_pass_ratings_per_s",
           "pipeline_peak_rss_gib", "notebook_ratings_per_s",
           "epoch_speedup_vs_notebook", "csv_prepare_s",
           "csv_prepare_peak_rss_gib", "pandas_csv_s",
           "csv_prepare_vs_pandas", "csv_load_s", "csv_split_s",
           "csv_load_split_s")


def prepare_stage(config: str, data_dir: str,
                  manual_dir: str | None = None) -> dict[str, float]:
  """Generates or parses `config` into TFDS; real releases from manual_dir."""
  from ncf_tfrs import data as data_lib  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  data_lib.prepare(config, data_dir=data_dir, manual_dir=manual_dir,
                   download=False)
  return {"prepare_s": time.perf_counter() - start}


def write_csv_stage(config: str, manual_dir: str) -> dict[str, float]:
  """Generates synthetic `config` into `manual_dir` as its CSV release."""
  from ncf_tfrs.datasets.movielens_users import synthetic  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  folder = os.path.join(manual_dir, f"ml-{CSV_RELEASES[config]}")
  synthetic.write_csv(synthetic.generate(synthetic.SPECS[config]), folder)
  return {"csv_write_s": time.perf_counter() - start,
          "csv_bytes": sum(os.path.getsize(os.path.join(folder, f))
                           for f in os.listdir(folder))}


def pandas_csv_stage(config: str, manual_dir: str) -> dict[str, float]:
  """The baseline of preparing a CSV release: a bare pandas read_csv of its
  two files (pandas' own dtype inference, no checks), then the ratings
  sorted by (user, time) and grouped by user, as the prepared data is."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  folder = os.path.join(manual_dir, f"ml-{CSV_RELEASES[config]}")
  start = time.perf_counter()
  ratings = pd.read_csv(os.path.join(folder, "ratings.csv"))
  pd.read_csv(os.path.join(folder, "movies.csv"))
  users = ratings.sort_values(["userId", "timestamp"], kind="stable").groupby(
      "userId", sort=False).size()
  return {"pandas_csv_s": time.perf_counter() - start,
          "pandas_csv_users": len(users)}


def pipeline_stage(config: str, data_dir: str, batch_size: int,
                   notebook: bool = False) -> dict[str, float]:
  """Load, split and one pass of batches: the product's or the notebook's."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import data as data_lib  # pylint: disable=g-import-not-at-top
  out = {}
  start = time.perf_counter()
  ratings = data_lib.load(config, data_dir=data_dir)
  out["load_s"] = time.perf_counter() - start
  out["ratings"] = len(ratings)
  start = time.perf_counter()
  train, _ = data_lib.split(ratings, "random")
  out["split_s"] = time.perf_counter() - start
  del ratings

  if notebook:
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
  for batch in data_lib.make_dataset(train, batch_size):
    seen += int(batch["liked"].shape[0])
  out["epoch_s"] = time.perf_counter() - start
  out["epoch_ratings_per_s"] = seen / out["epoch_s"]
  out["full_pass_ratings_per_s"] = out["ratings"] / (
      out["load_s"] + out["split_s"] + out["epoch_s"])
  return out


def _repetition(config: str, data_dir: str, batch_size: int,
                notebook: bool, csv: bool) -> dict[str, float]:
  batch = f"--batch_size={batch_size}"
  result = process.run_stage("prepare", config, data_dir)
  result.update(process.run_stage("pipeline", config, data_dir, batch))
  if notebook:
    baseline = process.run_stage("notebook", config, data_dir, batch)
    result["notebook_ratings_per_s"] = baseline["notebook_ratings_per_s"]
    result["notebook_peak_rss_gib"] = baseline["notebook_peak_rss_gib"]
    result["epoch_speedup_vs_notebook"] = (result["epoch_ratings_per_s"] /
                                           result["notebook_ratings_per_s"])
  if csv:
    result.update(_csv_repetition(config, batch))
  return result


def _csv_repetition(config: str, batch: str) -> dict[str, float]:
  """`config` as its CSV release: prepared from scratch, then loaded and
  split, against the pandas baseline on the same files."""
  if config not in CSV_RELEASES:
    raise ValueError(f"--csv: no CSV release for {config!r}; known: "
                     f"{sorted(CSV_RELEASES)}.")
  release = CSV_RELEASES[config]
  work = tempfile.mkdtemp(prefix="ncf_tfrs_bench_csv_")
  try:
    manual = f"--manual_dir={os.path.join(work, 'manual')}"
    data_dir = os.path.join(work, "tfds")
    out = process.run_stage("write_csv", config, data_dir, manual)
    prepared = process.run_stage("prepare", release, data_dir, manual)
    out["csv_prepare_s"] = prepared["prepare_s"]
    out["csv_prepare_peak_rss_gib"] = prepared["prepare_peak_rss_gib"]
    loaded = process.run_stage("pipeline", release, data_dir, batch)
    out["csv_load_s"] = loaded["load_s"]
    out["csv_split_s"] = loaded["split_s"]
    out["csv_load_split_s"] = loaded["load_s"] + loaded["split_s"]
    out.update(process.run_stage("pandas_csv", config, data_dir, manual))
    out["csv_prepare_vs_pandas"] = out["csv_prepare_s"] / out["pandas_csv_s"]
    return out
  finally:
    shutil.rmtree(work, ignore_errors=True)


def run_suite(configs: list[str], repeats: int, data_dir: str | None,
              batch_size: int, notebook: bool = True,
              csv: bool = False) -> dict[str, object]:
  """Every config, `repeats` times; per-run figures and their summary."""
  results = {}
  for config in configs:
    runs = []
    for i in range(repeats):
      run_dir = data_dir or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
      try:
        runs.append(_repetition(config, run_dir, batch_size, notebook, csv))
      finally:
        if not data_dir:
          shutil.rmtree(run_dir, ignore_errors=True)
      print(f"{config} run {i + 1}: " + ", ".join(
          f"{k}={v:.3g}" for k, v in runs[-1].items()), flush=True)
    results[config] = {"runs": runs, "summary": process.summarize(runs)}
  return results


def print_table(results: dict[str, object]) -> None:
  header = ["config", "ratings"] + list(COLUMNS)
  print("\nmedians over repeats:")
  print(" | ".join(header))
  for config, res in results.items():
    s = res["summary"]
    print(" | ".join([config, f"{s['ratings']['median']:,.0f}"] +
                     [f"{s[k]['median']:,.3g}" if k in s else "-"
                      for k in COLUMNS]))
