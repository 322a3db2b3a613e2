"""Training benchmark stages: the product against the notebook's recipe.

Each function runs one stage in the calling process and returns JSON-able
figures; `ncf_tfrs.bench` runs each in a fresh process (so peak RSS is the
stage's own) and puts them side by side. All stages use the same data, the
same split and the same held-out sample for their learning curves.

- `notebook_stage`: the notebook's recipe (`ncf_tfrs.bench.baseline`), one
  epoch.
- the product: the `ncf_tfrs.train` command on a flagfile's settings, whose
  metrics.json carries its own learning curve (`train_command`); with the
  `product_csv` stage, also as a user of a real release runs it: the same
  data written as that release's CSV archive (synthetic-32m as ml-32m) and
  read through `--manual_dir`.
- `throughput_stage`: ratings/s of short, repeated training windows of the
  joint model, the ranking task alone and the notebook recipe, interleaved
  (so their ratios hold on a shared machine) between two worker processes
  (`throughput_worker`): the product's with its own TensorFlow thread pools,
  the notebook's with TensorFlow's default, as it ran.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import TextIO

import numpy as np
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs import model as model_lib
from ncf_tfrs.bench import baseline
from ncf_tfrs.bench import data as bench_data
from ncf_tfrs.bench import process
from ncf_tfrs.training import callbacks
from ncf_tfrs.training import evaluation

def notebook_stage(dataset: str, data_dir: str | None, split: str = "random",
                   seed: int = 42, curve_points: int = 10,
                   max_train_ratings: int | None = None,
                   epochs: int = 1) -> dict[str, object]:
  """The notebook's recipe (one epoch, as it ran) on `dataset`'s split.

  Args:
    dataset: movielens_users config, e.g. 'synthetic-32m'.
    data_dir: TFDS data directory holding it (prepared).
    split: split method, as the product's --split.
    seed: seed of the split and of the recipe's shuffle.
    curve_points: held-out evaluations during the epoch.
    max_train_ratings: train on a prefix of the shuffled split only (for
      quick checks; the benchmark's figures use the whole epoch).
    epochs: passes over the training split.

  Returns:
    Wall times, ratings/s, the final held-out metrics and the curve.
  """
  tf.keras.utils.set_random_seed(seed)
  data_lib.prepare(dataset, data_dir, download=False)
  ratings = data_lib.load(dataset, data_dir)
  train, test = data_lib.split(ratings, split, seed=seed)
  del ratings
  data = baseline.notebook_data(train, test)
  sample = evaluation.held_out_sample(len(test))
  train_ds = baseline.train_dataset(data, seed=seed)
  steps = -(-len(data.train_x) // baseline.BATCH_SIZE)
  if max_train_ratings:
    steps = min(steps, -(-max_train_ratings // baseline.BATCH_SIZE))
    train_ds = train_ds.take(steps)
  curve = callbacks.HeldOutCurve(
      baseline.ordered_dataset(data.test_x[sample], data.test_y[sample]),
      every_steps=max(1, epochs * steps // curve_points),
      ratings_per_step=baseline.BATCH_SIZE)
  model = baseline.make_model(data)
  model.fit(train_ds, epochs=epochs, callbacks=[curve], verbose=2)
  train_seconds = curve.points[-1]["train_seconds"]
  start = time.perf_counter()
  test_metrics = model.evaluate(
      baseline.ordered_dataset(data.test_x, data.test_y), return_dict=True,
      verbose=0)
  trained = epochs * min(len(data.train_x), steps * baseline.BATCH_SIZE)
  for point in curve.points:
    point["ratings"] = min(point["ratings"], trained)
  return {
      "recipe": "notebook",
      "epochs": epochs,
      "train_ratings": trained,
      "mapping_seconds": data.mapping_seconds,
      "train_seconds": train_seconds,
      "wall_seconds": data.mapping_seconds + train_seconds,
      "train_ratings_per_s": trained / train_seconds,
      "test_seconds": time.perf_counter() - start,
      "test": {k: float(v) for k, v in test_metrics.items()},
      "curve": curve.points,
  }


class _ExecutionTimes(tf.keras.callbacks.Callback):
  """Wall-clock time at the end of each execution, with its step index."""

  def on_train_begin(self, logs=None):
    self.ends: list[tuple[int, float]] = []

  def on_train_batch_end(self, batch, logs=None):
    self.ends.append((int(batch), time.perf_counter()))

  def ratings_per_s(self, batch_size: int) -> float:
    """Rate between the first and the last execution end (warm steps only)."""
    (first, start), (last, end) = self.ends[0], self.ends[-1]
    return (last - first) * batch_size / (end - start)


def oracle_metrics(test: data_lib.Ratings) -> dict[str, float] | None:
  """The synthetic generator's planted probabilities scored as a model."""
  if test.oracle is None:
    return None
  liked = test.liked
  prob = np.clip(test.oracle, 1e-7, 1 - 1e-7)
  auc = tf.keras.metrics.AUC()
  auc.update_state(liked, prob)
  return {
      "auc": float(auc.result()),
      "accuracy": float(np.mean((prob > 0.5) == (liked > 0))),
      "log_loss": float(-np.mean(liked * np.log(prob) +
                                 (1 - liked) * np.log(1 - prob))),
  }


PRODUCT_RECIPES = ("joint", "ranking_only")
NOTEBOOK_RECIPES = ("notebook",)


def throughput_worker(dataset: str, data_dir: str | None,
                      recipes: tuple[str, ...],
                      model_config: model_lib.ModelConfig,
                      optimizer_config: model_lib.OptimizerConfig,
                      batch_size: int, steps_per_execution: int,
                      window_steps: int = 40, seed: int = 42,
                      requests: TextIO = sys.stdin,
                      replies: TextIO = sys.stdout) -> dict[str, object]:
  """Builds `recipes`, then times one training window of each per request.

  Runs in its own process (`throughput_stage` starts it), whose TensorFlow
  thread pools are those of the recipes: the product's own
  (`ncf_tfrs.training.threads`) for `PRODUCT_RECIPES`, TensorFlow's default
  for the notebook's, as it ran. Each line read from `requests` runs one
  window of `window_steps` steps of every recipe (10x the steps for the
  notebook, whose batches are 64x smaller) and writes one JSON line of
  ratings/s to `replies`. The product is fed by its own pipeline
  (`data_lib.make_dataset`); the notebook recipe by batches of 256 sliced
  from a shuffled in-memory copy of its training pairs, which is faster than
  its own tf.data shuffle (in its favour). Only warm steps count: the first
  execution of each window (iterator start, tracing) is excluded.

  Returns:
    At the end of `requests`, for the product: the oracle's metrics (None
    unless the data is synthetic), the batch size and steps per execution.
  """
  if window_steps < 2 * steps_per_execution:
    raise ValueError(
        f"window_steps ({window_steps}) must span at least two executions of "
        f"steps_per_execution={steps_per_execution} steps: the first is "
        "not timed.")
  unknown = sorted(set(recipes) - set(PRODUCT_RECIPES + NOTEBOOK_RECIPES))
  if unknown:
    raise ValueError(f"Unknown throughput recipes {unknown}; known: "
                     f"{PRODUCT_RECIPES + NOTEBOOK_RECIPES}.")
  tf.keras.utils.set_random_seed(seed)
  data_lib.prepare(dataset, data_dir, download=False)
  ratings = data_lib.load(dataset, data_dir)
  train, test = data_lib.split(ratings, "random", seed=seed)
  del ratings

  built = {}
  if "notebook" in recipes:
    notebook = baseline.notebook_data(train, test)
    order = np.random.default_rng(seed).permutation(len(notebook.train_x))
    steps = window_steps * 10
    notebook_x = notebook.train_x[order[:steps * baseline.BATCH_SIZE]]
    notebook_y = notebook.train_y[order[:steps * baseline.BATCH_SIZE]]
    built["notebook"] = (
        baseline.make_model(notebook),
        baseline.ordered_dataset(notebook_x, notebook_y, baseline.BATCH_SIZE),
        baseline.BATCH_SIZE, steps)
  product = [name for name in recipes if name in PRODUCT_RECIPES]
  if product:
    vocabulary = data_lib.Vocabulary.from_ratings(train)
    counts = np.bincount(train.movie, minlength=len(train.movie_ids))
    product_ds = data_lib.make_dataset(
        train, batch_size, seed=seed, movie_counts=counts, drop_remainder=True)
    for name in product:
      config = (model_config if name == "joint" else
                dataclasses.replace(model_config, retrieval_weight=0.0))
      model = model_lib.RecommenderModel(vocabulary.user_ids,
                                         vocabulary.movie_ids, config)
      model.compile(optimizer=model_lib.make_optimizer(model, optimizer_config),
                    steps_per_execution=steps_per_execution)
      built[name] = (model, product_ds, batch_size, window_steps)

  for _ in requests:
    rates = {}
    for name, (model, ds, size, num_steps) in built.items():
      timer = _ExecutionTimes()
      model.fit(ds.take(num_steps), epochs=1, verbose=0, callbacks=[timer])
      rates[name] = timer.ratings_per_s(size)
    replies.write(json.dumps(rates) + "\n")
    replies.flush()
  if not product:
    return {}
  return {"oracle": oracle_metrics(test), "batch_size": batch_size,
          "steps_per_execution": steps_per_execution}


def throughput_stage(dataset: str, data_dir: str, product_config: str,
                     repeats: int = 5,
                     window_steps: int = 40) -> dict[str, object]:
  """Training ratings/s of the product and the notebook recipe, interleaved.

  Two worker processes (`throughput_worker`), one for the product's joint
  model and its ranking task alone, one for the notebook recipe, each with
  its own TensorFlow thread pools, take turns: one window of each per
  round, `repeats` rounds after one that warms up (traces). Each ratio
  compares windows that shared the machine's state.

  Returns:
    Per recipe the ratings/s of every window and their median, min and max;
    the median ratios to the notebook; the thread pools each ran with; the
    oracle's metrics when the data is synthetic; each worker's peak RSS.
  """
  def worker(recipes):
    return process.Worker([
        "-m", "ncf_tfrs.bench", "--stage=throughput", f"--config={dataset}",
        f"--data_dir={data_dir}", f"--product_config={product_config}",
        f"--window_steps={window_steps}",
        f"--throughput_recipes={','.join(recipes)}"])
  workers = [worker(PRODUCT_RECIPES), worker(NOTEBOOK_RECIPES)]
  rates = {}
  try:
    for _ in range(repeats + 1):
      for w in workers:
        for name, rate in w.request().items():
          rates.setdefault(name, []).append(rate)
    (product, product_rss), (notebook, notebook_rss) = [
        w.close() for w in workers]
  finally:
    for w in workers:
      w.kill()
  result = {"repeats": repeats, "window_steps": window_steps,
            "batch_size": product["batch_size"],
            "steps_per_execution": product["steps_per_execution"],
            # (intra-op, inter-op); 0: TensorFlow's default.
            "threads": {"product": product["threads"],
                        "notebook": notebook["threads"]}}
  for name, values in rates.items():
    values = values[1:]  # The first round warms up.
    result[name] = {"median": statistics.median(values), "min": min(values),
                    "max": max(values), "runs": values}
  for name in PRODUCT_RECIPES:
    ratios = [a / b for a, b in zip(rates[name][1:], rates["notebook"][1:])]
    result[f"{name}_vs_notebook"] = {
        "median": statistics.median(ratios), "min": min(ratios),
        "max": max(ratios)}
  return {"throughput": result, "oracle": product["oracle"],
          "throughput_peak_rss_gib": max(product_rss, notebook_rss)}


TARGETS = {
    "joint_ratings_per_s": 140_000, "ranking_only_ratings_per_s": 500_000,
    "peak_rss_gib": 10, "accuracy_gain": 0.02, "auc_gain": 0.03,
    "wall_time_fraction": 0.2, "recall_at_100_gain": 0.2,
    "whole_run_vs_windows": 0.9, "whole_run_vs_notebook_windows": 35,
    "epoch_boundary_seconds": 10,
}
STAGES = ("notebook", "product", "product_curve", "product_csv", "tutorial",
          "throughput")


def train_command(name: str, flagfile: str, dataset: str, data_dir: str,
                  work_dir: str, eval_every_steps: int,
                  *extra: str) -> dict[str, object]:
  """The product's own train command on `flagfile`, from a fresh model dir."""
  model_dir = os.path.join(work_dir, f"{name}_model")
  shutil.rmtree(model_dir, ignore_errors=True)  # Never resume an old run.
  _, seconds, rss = process.run_python([
      "-m", "ncf_tfrs.train", f"--flagfile={flagfile}", f"--dataset={dataset}",
      f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--export_dir=",
      f"--eval_every_steps={eval_every_steps}", *extra])
  with open(os.path.join(model_dir, "metrics.json")) as f:
    result = json.load(f)
  result.update(recipe=name, flagfile=flagfile, peak_rss_gib=rss,
                process_seconds=seconds,
                # Training only, as the notebook's wall_seconds (its id mapping
                # plus its epoch): loading and final evaluation are left out.
                wall_seconds=result["train_seconds"])
  return result


def csv_archive(dataset: str, data_dir: str, manual_dir: str) -> str:
  """The release `dataset` is written as, in `manual_dir`: written there
  (in a fresh process) unless its ratings.csv already is. Returns the
  release's config name (synthetic-32m: 32m)."""
  if dataset not in bench_data.CSV_RELEASES:
    raise ValueError(f"product_csv: no CSV release for {dataset!r}; known: "
                     f"{sorted(bench_data.CSV_RELEASES)}.")
  release = bench_data.CSV_RELEASES[dataset]
  if not os.path.exists(os.path.join(manual_dir, f"ml-{release}",
                                     "ratings.csv")):
    process.run_stage("write_csv", dataset, data_dir,
                      f"--manual_dir={manual_dir}")
  return release


def run_suite(dataset: str, data_dir: str | None, work_dir: str | None,
              product_flagfile: str, tutorial_flagfile: str,
              stages: list[str], reuse: bool, eval_every_steps: int,
              repeats: int, window_steps: int,
              manual_dir: str | None = None) -> dict[str, object]:
  """The train suite on one split of `dataset`; stage results in work_dir.

  Each stage runs in a fresh process; with `reuse`, a stage whose result is
  already in work_dir is read back instead of run again. `product_csv`
  reads the CSV archive in `manual_dir` (default: work_dir/manual, written
  on first use) and prepares it into data_dir on its first run.
  """
  unknown = sorted(set(stages) - set(STAGES))
  if unknown:
    raise ValueError(f"Unknown train stages {unknown}; known: {STAGES}.")
  data_dir = data_dir or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
  work_dir = work_dir or tempfile.mkdtemp(prefix="ncf_tfrs_train_")
  os.makedirs(work_dir, exist_ok=True)
  process.run_stage("prepare", dataset, data_dir)
  config_path = process.product_config(product_flagfile, dataset, work_dir)
  report = {"dataset": dataset, "split": "random", "stages": {},
            "targets": TARGETS, "work_dir": work_dir}
  for stage in stages:
    path = os.path.join(work_dir, f"{stage}.json")
    if reuse and os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
      print(f"{stage}: reused {path}", flush=True)
    else:
      print(f"{stage}: running", flush=True)
      if stage == "notebook":
        result = process.run_stage("notebook_train", dataset, data_dir)
        result["peak_rss_gib"] = result.pop("notebook_train_peak_rss_gib")
      elif stage == "product":
        # As users run it: no curve points, whose evaluations slow the
        # training steps after them too (not only by their own time).
        result = train_command("product", product_flagfile, dataset,
                               data_dir, work_dir, 0)
      elif stage == "product_csv":
        archive = manual_dir or os.path.join(work_dir, "manual")
        result = train_command(
            "product_csv", product_flagfile,
            csv_archive(dataset, data_dir, archive),
            data_dir, work_dir, 0, f"--manual_dir={archive}",
            "--download=false")
      elif stage == "product_curve":
        result = train_command("product_curve", product_flagfile, dataset,
                               data_dir, work_dir, eval_every_steps)
      elif stage == "tutorial":
        result = train_command("tfrs-basic-retrieval", tutorial_flagfile,
                               dataset, data_dir, work_dir, 10**9)
      else:
        result = throughput_stage(dataset, data_dir, config_path, repeats,
                                  window_steps)
      with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if stage == "throughput":
      report["throughput"] = result["throughput"]
      report["oracle"] = result["oracle"]
    else:
      report["stages"][stage] = result
  return report


def print_table(report: dict[str, object]) -> None:
  stages = report["stages"]
  print(f"\n{report['dataset']}, held-out ratings of the random split:")
  print("recipe | train s | ratings/s | AUC | accuracy | log loss | "
        "recall@100 | peak RSS GiB")
  nan = float("nan")
  for name, r in stages.items():
    test = r["test"]
    # The notebook's Keras metrics are named as it named them; the product's
    # ranking task prefixes its own (its bare "loss" is the whole objective).
    prefix = "" if name == "notebook" else "ranking_"
    log_loss = test.get("loss" if name == "notebook" else "ranking_log_loss",
                        nan)
    print(" | ".join([
        name, f"{r['wall_seconds']:.0f}", f"{r['train_ratings_per_s']:,.0f}",
        f"{test.get(prefix + 'auc', nan):.4f}",
        f"{test.get(prefix + 'accuracy', nan):.4f}", f"{log_loss:.4f}",
        f"{r.get('lists', {}).get('retrieval_recall_at_100', nan):.4f}",
        f"{r['peak_rss_gib']:.1f}"]))
  if report.get("oracle"):
    o = report["oracle"]
    print(f"oracle | - | - | {o['auc']:.4f} | {o['accuracy']:.4f} | "
          f"{o['log_loss']:.4f} | - | -")
  for name, source in (("product", ""), ("product_csv", ", the CSV release")):
    product = stages.get(name)
    if product:
      print(f"\nthe train command{source}, whole run (metrics.json): "
            f"{product['train_ratings_per_s']:,.0f} ratings/s; epochs (s): "
            + ", ".join(f"{s:.0f}" for s in product.get("epoch_seconds", []))
            + "; pauses between epochs (s): " + ", ".join(
                f"{s:.1f}" for s in product.get("epoch_boundary_seconds",
                                                [])))
  if "throughput" in report:
    t = report["throughput"]
    print("\nthroughput, ratings/s (median [min, max] of "
          f"{t['repeats']} interleaved windows):")
    for name in ("joint", "ranking_only", "notebook"):
      print(f"{name}: {t[name]['median']:,.0f} [{t[name]['min']:,.0f}, "
            f"{t[name]['max']:,.0f}]")
    for name in ("joint_vs_notebook", "ranking_only_vs_notebook"):
      print(f"{name}: {t[name]['median']:.1f}x")
