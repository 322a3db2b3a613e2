"""Training benchmark stages: the product against the notebook's recipe.

Each function runs one stage in the calling process and returns JSON-able
figures; `ncf_tfrs.bench` runs each in a fresh process (so peak RSS is the
stage's own) and puts them side by side. All stages use the same data, the
same split and the same held-out sample for their learning curves.

- `notebook_stage`: the notebook's recipe (`ncf_tfrs.baseline`), one epoch.
- `product_stage`: `ncf_tfrs.train.run` on a flagfile's settings, whose
  metrics.json carries its own learning curve.
- `throughput_stage`: ratings/s of short, repeated training windows of the
  joint model, the ranking task alone and the notebook recipe, interleaved
  in one process, so their ratios hold on a shared machine.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np
import tensorflow as tf

from ncf_tfrs import baseline
from ncf_tfrs import evaluate
from ncf_tfrs import model as model_lib
from ncf_tfrs import pipeline

def notebook_stage(dataset: str, data_dir: str | None, split: str = "random",
                   seed: int = 42, curve_points: int = 10,
                   max_train_ratings: int | None = None) -> dict[str, object]:
  """One epoch of the notebook's recipe on `dataset`'s split.

  Args:
    dataset: movielens_users config, e.g. 'synthetic-32m'.
    data_dir: TFDS data directory holding it (prepared).
    split: split method, as the product's --split.
    seed: seed of the split and of the recipe's shuffle.
    curve_points: held-out evaluations during the epoch.
    max_train_ratings: train on a prefix of the shuffled split only (for
      quick checks; the benchmark's figures use the whole epoch).

  Returns:
    Wall times, ratings/s, the final held-out metrics and the curve.
  """
  tf.keras.utils.set_random_seed(seed)
  pipeline.prepare(dataset, data_dir, download=False)
  ratings = pipeline.load(dataset, data_dir)
  train, test = pipeline.split(ratings, split, seed=seed)
  del ratings
  data = baseline.notebook_data(train, test)
  sample = evaluate.held_out_sample(len(test))
  train_ds = baseline.train_dataset(data, seed=seed)
  steps = -(-len(data.train_x) // baseline.BATCH_SIZE)
  if max_train_ratings:
    steps = min(steps, -(-max_train_ratings // baseline.BATCH_SIZE))
    train_ds = train_ds.take(steps)
  curve = evaluate.HeldOutCurve(
      baseline.ordered_dataset(data.test_x[sample], data.test_y[sample]),
      every_steps=max(1, steps // curve_points),
      ratings_per_step=baseline.BATCH_SIZE)
  model = baseline.make_model(data)
  model.fit(train_ds, epochs=1, callbacks=[curve], verbose=2)
  train_seconds = curve.points[-1]["train_seconds"]
  start = time.perf_counter()
  test_metrics = model.evaluate(
      baseline.ordered_dataset(data.test_x, data.test_y), return_dict=True,
      verbose=0)
  trained = min(len(data.train_x), steps * baseline.BATCH_SIZE)
  for point in curve.points:
    point["ratings"] = min(point["ratings"], trained)
  return {
      "recipe": "notebook",
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


def oracle_metrics(test: pipeline.Ratings) -> dict[str, float] | None:
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


def throughput_stage(dataset: str, data_dir: str | None,
                     model_config: model_lib.ModelConfig,
                     optimizer_config: model_lib.OptimizerConfig,
                     batch_size: int, steps_per_execution: int,
                     repeats: int = 5, window_steps: int = 40,
                     seed: int = 42) -> dict[str, object]:
  """Training ratings/s of the product and the notebook recipe, interleaved.

  Windows of `window_steps` training steps of the joint model, of the
  ranking task alone and of the notebook recipe run in turn, `repeats`
  times, in this one process: each ratio compares windows that shared the
  machine's state. The product is fed by its own pipeline
  (`pipeline.make_dataset`); the notebook recipe by batches of 256 sliced
  from a shuffled in-memory copy of its training pairs, which is faster than
  its own tf.data shuffle (in its favour). Only warm steps count: the
  first execution of each window (iterator start, tracing) is excluded.

  Returns:
    Per recipe the ratings/s of every window and their median, min and max;
    the median ratios to the notebook; the oracle's metrics when the data is
    synthetic.
  """
  if window_steps < 2 * steps_per_execution:
    raise ValueError(
        f"window_steps ({window_steps}) must span at least two executions of "
        f"steps_per_execution={steps_per_execution} steps: the first is "
        "not timed.")
  tf.keras.utils.set_random_seed(seed)
  pipeline.prepare(dataset, data_dir, download=False)
  ratings = pipeline.load(dataset, data_dir)
  train, test = pipeline.split(ratings, "random", seed=seed)
  del ratings
  vocabulary = pipeline.Vocabulary.from_ratings(train)
  counts = np.bincount(train.movie, minlength=len(train.movie_ids))
  product_ds = pipeline.make_dataset(train, batch_size, seed=seed,
                                     movie_counts=counts, drop_remainder=True)
  notebook = baseline.notebook_data(train, test)
  order = np.random.default_rng(seed).permutation(len(notebook.train_x))
  # The notebook's batches are 64x smaller than ours: 10x the steps.
  steps = window_steps * 10
  notebook_x = notebook.train_x[order[:steps * baseline.BATCH_SIZE]]
  notebook_y = notebook.train_y[order[:steps * baseline.BATCH_SIZE]]
  notebook_ds = baseline.ordered_dataset(notebook_x, notebook_y,
                                         baseline.BATCH_SIZE)

  def product(config):
    model = model_lib.RecommenderModel(vocabulary.user_ids,
                                       vocabulary.movie_ids, config)
    model.compile(optimizer=model_lib.make_optimizer(model, optimizer_config),
                  steps_per_execution=steps_per_execution)
    return model, product_ds, batch_size, window_steps

  recipes = {
      "joint": product(model_config),
      "ranking_only": product(dataclasses.replace(model_config,
                                                  retrieval_weight=0.0)),
      "notebook": (baseline.make_model(notebook), notebook_ds,
                   baseline.BATCH_SIZE, steps),
  }
  rates = {name: [] for name in recipes}
  for _ in range(repeats + 1):  # The first round warms up (traces).
    for name, (model, ds, size, num_steps) in recipes.items():
      timer = _ExecutionTimes()
      model.fit(ds.take(num_steps), epochs=1, verbose=0, callbacks=[timer])
      rates[name].append(timer.ratings_per_s(size))
  result = {"repeats": repeats, "window_steps": window_steps,
            "batch_size": batch_size,
            "steps_per_execution": steps_per_execution}
  for name, values in rates.items():
    values = values[1:]
    result[name] = {"median": statistics.median(values), "min": min(values),
                    "max": max(values), "runs": values}
  for name in ("joint", "ranking_only"):
    ratios = [a / b for a, b in zip(rates[name][1:], rates["notebook"][1:])]
    result[f"{name}_vs_notebook"] = {
        "median": statistics.median(ratios), "min": min(ratios),
        "max": max(ratios)}
  return {"throughput": result, "oracle": oracle_metrics(test)}
