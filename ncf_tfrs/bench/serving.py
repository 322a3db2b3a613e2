"""Serving benchmark: ScaNN against exact search, and end-to-end recommend.

`run_suite` measures, with medians over repeats:

- candidate retrieval: ScaNN (the export's settings, `export.ScannConfig`)
  against exact brute force (numpy matmul + argpartition, the baseline) for
  top 100 over synthetic catalogs of dimension 64: recall@100 against the
  exact answer, and queries/s for single queries and for batches;
- end to end, in process: `serving.Recommender` (query embedding, ScaNN top
  200, NCF rerank, top 10) over an export of the product's architecture at a
  dataset's size (for synthetic-32m, 200,948 users x 84,432 movies) with
  random weights: single-request latency p50/p90/p99 after warm-up (and
  every request's latency, for the distribution), and users/s in batches.

Catalogs are clustered (a Gaussian mixture, the shape trained embeddings
have) and, at the smallest size, also isotropic random vectors: the worst
case for a partitioned index, reported so the figures are not only the
flattering ones.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Callable, Optional, Sequence

import numpy as np

TOP_K = 100
DIM = 64
TARGET_RECALL = 0.95


def _catalog(num_movies: int, kind: str, num_queries: int, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
  """(movies [N, DIM], queries [Q, DIM]) float32."""
  rng = np.random.default_rng(seed)
  if kind == "random":
    return (rng.standard_normal((num_movies, DIM), dtype=np.float32),
            rng.standard_normal((num_queries, DIM), dtype=np.float32))
  num_clusters = max(2, int(math.sqrt(num_movies)))
  centers = rng.standard_normal((num_clusters, DIM), dtype=np.float32)

  def draw(n):
    points = centers[rng.integers(0, num_clusters, n)]
    return points + 0.7 * rng.standard_normal((n, DIM), dtype=np.float32)

  return draw(num_movies), draw(num_queries)


def _exact(movies: np.ndarray, queries: np.ndarray, k: int = TOP_K,
           chunk: int = 64) -> np.ndarray:
  """Exact top k rows [Q, k] by dot product, best first."""
  out = np.empty((len(queries), k), dtype=np.int64)
  for start in range(0, len(queries), chunk):
    scores = queries[start:start + chunk] @ movies.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    out[start:start + chunk] = np.take_along_axis(top, order, axis=1)
  return out


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
  return float(np.mean([len(set(a) & set(b)) / len(b)
                        for a, b in zip(found, exact)]))


def _median_rate(fn: Callable[[], int], repeats: int) -> float:
  """Median over repeats of items/s, `fn` returning the items it did."""
  rates = []
  for _ in range(repeats):
    start = time.perf_counter()
    items = fn()
    rates.append(items / (time.perf_counter() - start))
  return statistics.median(rates)


def ann_case(num_movies: int, kind: str, repeats: int,
             num_queries: int = 1000, single_queries: int = 200,
             exact_single_queries: int = 50) -> dict:
  """ScaNN vs exact top 100 over one synthetic catalog."""
  from ncf_tfrs import export  # pylint: disable=g-import-not-at-top
  movies, queries = _catalog(num_movies, kind, num_queries)
  config = export.ScannConfig(num_neighbors=TOP_K)
  start = time.perf_counter()
  searcher = export.build_scann_searcher(movies, config)
  build_s = time.perf_counter() - start
  exact = _exact(movies, queries)
  found, _ = searcher.search_batched_parallel(queries,
                                              final_num_neighbors=TOP_K)
  recall = _recall(np.asarray(found), exact)

  def scann_single():
    for q in queries[:single_queries]:
      searcher.search(q, final_num_neighbors=TOP_K)
    return single_queries

  def scann_batched():
    searcher.search_batched_parallel(queries, final_num_neighbors=TOP_K)
    return num_queries

  def exact_single():
    for q in queries[:exact_single_queries]:
      _exact(movies, q[np.newaxis])
    return exact_single_queries

  def exact_batched():
    _exact(movies, queries)
    return num_queries

  result = {
      "num_movies": num_movies, "kind": kind, "dim": DIM, "k": TOP_K,
      "scann": config.resolve(num_movies), "build_s": build_s,
      "recall_at_100": recall,
      "scann_single_qps": _median_rate(scann_single, repeats),
      "exact_single_qps": _median_rate(exact_single, repeats),
      "scann_batched_qps": _median_rate(scann_batched, repeats),
      "exact_batched_qps": _median_rate(exact_batched, repeats),
  }
  for mode in ("single", "batched"):
    result[f"{mode}_speedup"] = (result[f"scann_{mode}_qps"] /
                                 result[f"exact_{mode}_qps"])
  return result


# Training ratings per user in the synthetic histories: lognormal, as
# MovieLens's activity is (ml-32m: 25.6M training ratings over 200,948
# users, a mean of 127, its heaviest users above 20,000), at least 16 (80%
# of MovieLens's 20).
HISTORY_MEAN = 127
HISTORY_SIGMA = 1.4
HISTORY_MIN = 16


def synthetic_history(num_users: int, num_movies: int, seed: int = 0):
  """Rated movies per user with MovieLens's activity and popularity shape.

  Returns a `data.RatedHistory` over users "1".."num_users" and catalog
  rows (row 0 most rated), movies drawn by a Zipf-like popularity.
  """
  from ncf_tfrs import data as data_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  mu = math.log(HISTORY_MEAN) - HISTORY_SIGMA**2 / 2
  counts = np.clip(rng.lognormal(mu, HISTORY_SIGMA, num_users).round(),
                   HISTORY_MIN, 0.9 * num_movies).astype(np.int64)
  popularity = 1.0 / np.arange(1, num_movies + 1) ** 0.9
  cdf = np.cumsum(popularity) / popularity.sum()
  user = np.repeat(np.arange(num_users, dtype=np.int64), counts)
  movie = np.minimum(np.searchsorted(cdf, rng.random(len(user))),
                     num_movies - 1)
  pairs = np.unique(user * num_movies + movie)  # Repeated draws count once.
  user, movie = np.divmod(pairs, num_movies)
  return data_lib.RatedHistory(
      user_ids=np.array([str(i) for i in range(1, num_users + 1)],
                        dtype=bytes),
      row_splits=np.concatenate(
          [[0], np.cumsum(np.bincount(user, minlength=num_users))]),
      movies=movie.astype(np.int32))


def _synthetic_export(export_dir: str, num_users: int, num_movies: int,
                      num_candidates: int, model_config,
                      history=None) -> None:
  """Exports a `model_config` model with random weights."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import export  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import features  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import model as model_lib  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import data as data_lib  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(0)
  vocabulary = data_lib.Vocabulary(
      user_ids=np.array([str(i) for i in range(1, num_users + 1)], dtype=bytes),
      movie_ids=np.array([str(i) for i in range(1, num_movies + 1)],
                         dtype=bytes),
      movie_counts=np.arange(num_movies, 0, -1, dtype=np.int64))
  model = model_lib.RecommenderModel(vocabulary.user_ids,
                                     vocabulary.movie_ids, model_config)
  model({features.USER_ID: tf.constant(vocabulary.user_ids[:1]),
         features.MOVIE_ID: tf.constant(vocabulary.movie_ids[:1])})
  export.export_model(model, vocabulary, None, export_dir, "bench",
                      export.ScannConfig(num_neighbors=num_candidates),
                      with_scann_model=False, history=history)


def _folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def end_to_end(repeats: int, num_users: int, num_movies: int,
               model_config=None, num_candidates: int = 200,
               k: int = 10, requests: int = 500, warmup: int = 50,
               batch_size: int = 256, batches: int = 8,
               work_dir: Optional[str] = None, history=None) -> dict:
  """In-process recommend latency and throughput over a synthetic export.

  With a `history`, the export leaves each user's rated movies out, and
  requests sample users by their number of ratings, so heavy users are in
  them as often as they are in traffic; without, uniformly.

  Args:
    repeats: Repetitions of the timed requests; percentiles are medians.
    num_users: Users in the export's vocabulary.
    num_movies: Movies in the export's vocabulary and ScaNN index.
    model_config: The exported architecture (`model.ModelConfig`; default
      its defaults). The product's flagfile gives the one it serves.
    num_candidates: ScaNN candidates reranked per user.
    k: Recommendations per user.
    requests: Timed single-user requests per repeat.
    warmup: Untimed requests first.
    batch_size: Users per batched request.
    batches: Batched requests per repeat.
    work_dir: Where the temporary export goes (default: the system's).
    history: Each user's rated movies (`synthetic_history`), or None.
  """
  import dataclasses  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import model as model_lib  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import serving  # pylint: disable=g-import-not-at-top
  model_config = model_config or model_lib.ModelConfig()
  export_dir = tempfile.mkdtemp(prefix="bench_serving_", dir=work_dir)
  try:
    start = time.perf_counter()
    _synthetic_export(export_dir, num_users, num_movies, num_candidates,
                      model_config, history)
    export_s = time.perf_counter() - start
    export_bytes = _folder_bytes(export_dir)
    recommender = serving.Recommender.load(export_dir, "bench")
    rng = np.random.default_rng(0)
    weights = None
    if history is not None:
      weights = np.diff(history.row_splits).astype(np.float64)
      weights /= weights.sum()
    draw = lambda n: [str(u) for u in rng.choice(  # pylint: disable=g-long-lambda
        np.arange(1, num_users + 1), n, p=weights)]
    users = draw(warmup + requests)
    for user in users[:warmup]:
      recommender.recommend([user], k)
    runs = []
    all_ms = []
    for _ in range(repeats):
      latencies = []
      for user in users[warmup:]:
        start = time.perf_counter()
        recommender.recommend([user], k)
        latencies.append(time.perf_counter() - start)
      ms = np.array(latencies) * 1e3
      all_ms.extend(ms.tolist())
      runs.append(np.percentile(ms, [50, 90, 99]))
    p50, p90, p99 = np.median(np.array(runs), axis=0)
    user_batches = [draw(batch_size) for _ in range(batches)]
    recommender.recommend(user_batches[0], k)  # Warm-up of the batch shape.

    def batched():
      for batch in user_batches:
        recommender.recommend(batch, k)
      return batch_size * batches

    return {
        "num_users": num_users, "num_movies": num_movies,
        "model": dataclasses.asdict(model_config),
        "num_candidates": num_candidates, "k": k, "export_s": export_s,
        "export_bytes": export_bytes,
        "excludes_rated": history is not None,
        "history_ratings": (0 if history is None
                            else int(len(history.movies))),
        "single_p50_ms": float(p50), "single_p90_ms": float(p90),
        "single_p99_ms": float(p99), "requests": requests,
        "single_latencies_ms": [round(v, 4) for v in all_ms],
        "batch_size": batch_size,
        "batched_users_per_s": _median_rate(batched, repeats),
    }
  finally:
    shutil.rmtree(export_dir, ignore_errors=True)


def run_suite(repeats: int,
              catalog_sizes: Sequence[int],
              random_catalog_sizes: Sequence[int],
              end_to_end_size: Optional[tuple[int, int]] = None,
              model_config=None,
              work_dir: Optional[str] = None) -> dict:
  """The serving suite; JSON-able results (see the module docstring).

  Args:
    repeats: Repetitions of every timing; medians are reported.
    catalog_sizes: Clustered catalogs for ScaNN vs exact.
    random_catalog_sizes: Isotropic random catalogs (the worst case).
    end_to_end_size: (users, movies) of the export `Recommender` is measured
      on; None skips it (at synthetic-32m's size the export takes a minute).
    model_config: The exported architecture (`model.ModelConfig`).
    work_dir: Where the temporary export goes (default: the system's).
  """
  import ncf_tfrs  # pylint: disable=g-import-not-at-top,unused-import
  cases = [ann_case(n, "clustered", repeats) for n in catalog_sizes]
  cases += [ann_case(n, "random", repeats) for n in random_catalog_sizes]
  results = {
      "suite": "serving", "repeats": repeats,
      "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
      "targets": {"recall_at_100": TARGET_RECALL,
                  "speedup_84k": 5, "speedup_1m": 10,
                  "single_p50_ms": 3, "single_p99_ms": 10,
                  "batched_users_per_s": 2000},
      "ann": cases,
  }
  if end_to_end_size:
    # Rated movies left out (the product) and, in the same run, not (the
    # export before it carried histories), with the same users' traffic.
    history = synthetic_history(*end_to_end_size)
    results["end_to_end"] = end_to_end(repeats, *end_to_end_size,
                                       model_config=model_config,
                                       work_dir=work_dir, history=history)
    results["end_to_end_no_exclusion"] = end_to_end(
        repeats, *end_to_end_size, model_config=model_config,
        work_dir=work_dir)
  return results


def run_for_config(dataset: str, product_flagfile: str, repeats: int,
                   scann_catalogs: Sequence[int] = ()) -> dict:
  """The suite sized by a synthetic config, on the product's architecture.

  Catalogs are the config's movie count plus `scann_catalogs`; the
  end-to-end export is the config's users x movies with the flagfile's
  ModelConfig.
  """
  from ncf_tfrs.bench import process  # pylint: disable=g-import-not-at-top
  from ncf_tfrs.datasets.movielens_users import synthetic  # pylint: disable=g-import-not-at-top
  from ncf_tfrs.training import config as config_lib  # pylint: disable=g-import-not-at-top
  if dataset not in synthetic.SPECS:
    raise ValueError(f"{dataset}: the serving suite takes its sizes from a "
                     f"synthetic config, one of {sorted(synthetic.SPECS)}.")
  spec = synthetic.SPECS[dataset]
  with tempfile.TemporaryDirectory(prefix="ncf_tfrs_serving_") as work_dir:
    with open(process.product_config(product_flagfile, dataset,
                                     work_dir)) as f:
      model_config = config_lib.ExperimentConfig.from_json(f.read()).model
    results = run_suite(
        repeats, catalog_sizes=[spec.num_movies, *scann_catalogs],
        random_catalog_sizes=[spec.num_movies],
        end_to_end_size=(spec.num_users, spec.num_movies),
        model_config=model_config, work_dir=work_dir)
  results.update(dataset=dataset, product_flagfile=product_flagfile)
  return results


def print_table(results: dict) -> None:
  """Prints the suite's results as two plain-text tables."""
  print(f"ScaNN vs exact top-{TOP_K} (dim {DIM}), medians of "
        f"{results['repeats']} repeats")
  header = (f"{'catalog':>10} {'kind':>9} {'leaves':>6} {'search':>6} "
            f"{'build s':>7} {'recall':>6} {'single qps':>17} {'x':>5} "
            f"{'batched qps':>19} {'x':>5}")
  print(header)
  for case in results["ann"]:
    s = case["scann"]
    print(f"{case['num_movies']:>10,} {case['kind']:>9} "
          f"{s['num_leaves'] or '-':>6} {s['num_leaves_to_search'] or '-':>6} "
          f"{case['build_s']:>7.1f} {case['recall_at_100']:>6.3f} "
          f"{case['scann_single_qps']:>8,.0f}/{case['exact_single_qps']:<8,.0f} "
          f"{case['single_speedup']:>5.1f} "
          f"{case['scann_batched_qps']:>9,.0f}/{case['exact_batched_qps']:<9,.0f} "
          f"{case['batched_speedup']:>5.1f}")
  print("(qps: ScaNN/exact; x: ScaNN speed-up over exact numpy brute force)")
  e2e = results.get("end_to_end")
  if e2e:
    print(f"\nRecommend in process: {e2e['num_users']:,} users x "
          f"{e2e['num_movies']:,} movies, ScaNN top {e2e['num_candidates']}, "
          f"rerank, top {e2e['k']}")
    print(f"single request p50 {e2e['single_p50_ms']:.2f} ms, "
          f"p90 {e2e['single_p90_ms']:.2f} ms, p99 {e2e['single_p99_ms']:.2f} "
          f"ms ({e2e['requests']} requests after warm-up); batches of "
          f"{e2e['batch_size']}: {e2e['batched_users_per_s']:,.0f} users/s")
    off = results.get("end_to_end_no_exclusion")
    if off:
      print(f"rated movies left out ({e2e['history_ratings']:,} in the "
            f"export): export {e2e['export_bytes'] / 2**20:,.0f} MiB in "
            f"{e2e['export_s']:.0f} s; without: "
            f"{off['export_bytes'] / 2**20:,.0f} MiB in {off['export_s']:.0f} "
            f"s, p50 {off['single_p50_ms']:.2f} ms, p99 "
            f"{off['single_p99_ms']:.2f} ms, "
            f"{off['batched_users_per_s']:,.0f} users/s")
