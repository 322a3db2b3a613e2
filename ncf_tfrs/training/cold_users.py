"""Offline evaluation of users the model never saw, served from their ratings.

A model is trained without a seeded share of the users
(`data.hold_out_users`). Each held-out user then arrives with their first n
ratings by time, as a new user's request would; what they rated after is
held out. The served list is the product's, computed from those n ratings:
retrieval over the catalog from the history's query, less the n movies, then
the top C reranked by the history's NCF row (`RecommenderModel
.history_rerank_scores`). Against it: retrieval alone and the most rated
movies, which is what such a user got before (the `is_fallback` list).

Metrics are liked recall@k and NDCG@k over the held-out movies the user
liked (rating > 3), averaged over users with at least one.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs import features
from ncf_tfrs.training import evaluation

# Ratings each held-out user gives, as the protocol asks: 5, 10, 20.
GIVEN_RATINGS = (5, 10, 20)


class ColdUserEvaluator:
  """Scores a model's lists for held-out users given their first n ratings."""

  def __init__(self, vocabulary: data_lib.Vocabulary,
               held_out: data_lib.Ratings, num_given: int,
               config: evaluation.ListEvalConfig = evaluation.ListEvalConfig()):
    """Initializes the evaluator.

    Args:
      vocabulary: the model's vocabularies; the catalog is its movies, most
        rated first (the popularity list).
      held_out: every rating of the held-out users.
      num_given: ratings given per user (their first, by time); users with
        no liked movie after them are not scored.
      config: list size, candidates, user sample and batch size.
    """
    given, rest = data_lib.first_by_time(held_out, num_given)
    position = {m: i for i, m in enumerate(vocabulary.movie_ids)}
    catalog_position = np.array(
        [position.get(m, -1) for m in held_out.movie_ids.astype(bytes)],
        np.int64)
    num_users = len(held_out.user_ids)
    liked = evaluation._UserItems(rest.take(rest.liked > 0), catalog_position,
                                  num_users, distinct=True)
    users = np.flatnonzero(np.diff(liked.splits) > 0)
    if config.max_users is not None and len(users) > config.max_users:
      rng = np.random.default_rng(config.seed)
      users = np.sort(rng.choice(users, config.max_users, replace=False))
    if not len(users):
      raise ValueError(f"No held-out user has a liked movie after their "
                       f"first {num_given} ratings.")
    # Each user's given ratings as [U, num_given] rows, "" / 0 padded.
    order = np.lexsort((given.timestamp, given.user))
    user, movie = given.user[order], given.movie[order]
    column = np.arange(len(user)) - np.searchsorted(user, user)
    row = np.full(num_users, -1)
    row[users] = np.arange(len(users))
    keep = row[user] >= 0
    self._history_ids = np.full((len(users), num_given),
                                features.HISTORY_PAD.encode(), dtype=object)
    self._history_ids[row[user[keep]], column[keep]] = (
        held_out.movie_ids.astype(bytes)[movie[keep]])
    self._history_ratings = np.zeros((len(users), num_given), np.float32)
    self._history_ratings[row[user[keep]], column[keep]] = (
        given.rating[order][keep])
    self._given = evaluation._UserItems(given, catalog_position, num_users)
    self._liked = liked
    self._users = users
    self._catalog = vocabulary.movie_ids
    self._config = config
    self._functions = None

  def _graph_functions(self, model):
    """The model's history query and rerank as graphs, traced once per
    model for batches of any size."""
    if self._functions is None or self._functions[0] is not model:
      history = tf.TensorSpec([None, None], tf.string)
      ratings = tf.TensorSpec([None, None], tf.float32)
      self._functions = (model, (
          tf.function(model.history_query_embeddings,
                      input_signature=[history, ratings]),
          tf.function(model.history_rerank_scores,
                      input_signature=[history, ratings,
                                       tf.TensorSpec([None, None],
                                                     tf.string)])))
    return self._functions[1]

  def __call__(self, model) -> dict[str, float]:
    """List metrics of `model` (a `RecommenderModel` with a history side)."""
    config, catalog, n = self._config, self._catalog, self._config.list_size
    query, rerank = self._graph_functions(model)
    candidates = model.candidate_embeddings(tf.constant(catalog))
    sums: dict[str, float] = {}
    for start in range(0, len(self._users), config.batch_size):
      rows = slice(start, start + config.batch_size)
      batch = self._users[rows]
      ids = tf.constant(self._history_ids[rows].astype(bytes))
      given_ratings = tf.constant(self._history_ratings[rows])
      scores = tf.matmul(query(ids, given_ratings), candidates,
                         transpose_b=True).numpy()
      given_rows = self._given.rows(batch)
      scores[given_rows] = -np.inf
      top = tf.math.top_k(
          scores, k=min(max(n, config.num_candidates), len(catalog))
      ).indices.numpy()
      cands = top[:, :config.num_candidates]
      unseen = np.isfinite(np.take_along_axis(scores, cands, axis=1))
      order = np.where(unseen, rerank(ids, given_ratings,
                                      tf.constant(catalog[cands])).numpy(),
                       -np.inf)
      served = np.take_along_axis(
          cands, np.argsort(-order, axis=1, kind="stable")[:, :n], axis=1)
      # The vocabulary is most rated first; the n most rated unseen movies
      # lie within its first n + (most movies a user gave).
      head = np.arange(min(len(catalog), n + int(
          np.bincount(given_rows[0]).max(initial=0))))
      unseen_head = np.isfinite(scores[:, head])
      lists = {"history_served": served, "history_retrieval": top[:, :n],
               "popularity": head[np.argsort(~unseen_head, axis=1,
                                             kind="stable")[:, :n]]}
      num_liked = self._liked.counts(batch)
      for name, ranked in lists.items():
        values = evaluation._list_metrics(
            self._liked.contains(batch, ranked), num_liked)
        for metric in ("recall", "ndcg"):
          key = f"{name}_liked_{metric}_at_{n}"
          sums[key] = sums.get(key, 0.0) + float(values[metric].sum())
    metrics = {name: total / len(self._users) for name, total in sums.items()}
    metrics["cold_users"] = len(self._users)
    return metrics
