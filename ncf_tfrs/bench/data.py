"""Data benchmark: MovieLens to training batches, against the notebook's pipeline.

Per config and repetition, each stage in a fresh process: prepare (generate
or parse, and write TFDS), load (TFDS -> flat columns), split, and one pass
of training batches; against one pass of the notebook's input pipeline
(from_tensor_slices, shuffle over the whole split, batch 256) on the same
split. With no data_dir each repetition prepares from scratch.
"""

from __future__ import annotations

import shutil
import tempfile
import time

from ncf_tfrs.bench import process

COLUMNS = ("prepare_s", "prepare_peak_rss_gib", "load_s", "split_s",
           "epoch_s", "epoch_ratings_per_s", "full_pass_ratings_per_s",
           "pipeline_peak_rss_gib", "notebook_ratings_per_s",
           "epoch_speedup_vs_notebook")


def prepare_stage(config: str, data_dir: str,
                  manual_dir: str | None = None) -> dict[str, float]:
  """Generates or parses `config` into TFDS; real releases from manual_dir."""
  from ncf_tfrs import data as data_lib  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  data_lib.prepare(config, data_dir=data_dir, manual_dir=manual_dir,
                   download=False)
  return {"prepare_s": time.perf_counter() - start}


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
                notebook: bool) -> dict[str, float]:
  batch = f"--batch_size={batch_size}"
  result = process.run_stage("prepare", config, data_dir)
  result.update(process.run_stage("pipeline", config, data_dir, batch))
  if notebook:
    baseline = process.run_stage("notebook", config, data_dir, batch)
    result["notebook_ratings_per_s"] = baseline["notebook_ratings_per_s"]
    result["notebook_peak_rss_gib"] = baseline["notebook_peak_rss_gib"]
    result["epoch_speedup_vs_notebook"] = (result["epoch_ratings_per_s"] /
                                           result["notebook_ratings_per_s"])
  return result


def run_suite(configs: list[str], repeats: int, data_dir: str | None,
              batch_size: int, notebook: bool = True) -> dict[str, object]:
  """Every config, `repeats` times; per-run figures and their summary."""
  results = {}
  for config in configs:
    runs = []
    for i in range(repeats):
      run_dir = data_dir or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
      try:
        runs.append(_repetition(config, run_dir, batch_size, notebook))
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
