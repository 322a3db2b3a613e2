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

import time

import numpy as np
import tensorflow as tf

from ncf_tfrs import baseline
from ncf_tfrs import evaluate
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
      baseline.test_dataset(data.test_x[sample], data.test_y[sample]),
      every_steps=max(1, steps // curve_points),
      ratings_per_step=baseline.BATCH_SIZE)
  model = baseline.make_model(data)
  model.fit(train_ds, epochs=1, callbacks=[curve], verbose=2)
  train_seconds = curve.points[-1]["train_seconds"]
  start = time.perf_counter()
  test_metrics = model.evaluate(
      baseline.test_dataset(data.test_x, data.test_y), return_dict=True,
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
