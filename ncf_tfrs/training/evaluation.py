"""Offline evaluation of what the product serves: top-k lists per user.

Ranking metrics (accuracy, AUC, log loss ...) come from Keras's evaluate on
the held-out ratings. This module adds the list metrics, computed per user
(not per held-out rating: at ml-32m that would be 6.4M queries) over the whole
movie catalog, never recommending a movie the user rated in training:

- retrieval recall@K: the share of a user's held-out movies in the top K of
  the two-tower model;
- `factorized_top_K` (K the largest recall cutoff): the TFRS retrieval
  tutorial's protocol, for comparison with it: the share of held-out
  ratings whose movie is in the user's top K over the whole catalog, movies
  rated in training not excluded, averaged over ratings, not users;
- end to end, on the held-out movies the user liked (rating > 3): recall@10
  and NDCG@10 of the top C retrieval candidates reranked as served
  (`rerank_liked_*`: `RecommenderModel.rerank_scores`, retrieval logit plus
  NCF log-probability), against the NCF score alone (`ncf_rerank_liked_*`),
  retrieval alone (`retrieval_liked_*`), the most popular unseen movies
  (`popularity_liked_*`) and the served list with rated movies left in
  (`rerank_with_seen_liked_*`: the top C over the whole catalog reranked,
  what the product served before it left rated movies out);
- the served list by the literature's protocol (Microsoft Recommenders'
  ml-100k table, with the 'stratified' split): every held-out movie is
  relevant; `rerank_{precision,recall,ndcg,map}_at_10`, MAP normalised by
  the user's number of held-out movies, as in the published table.

Recall is hits / relevant movies, averaged over users.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs.training import threads


@dataclasses.dataclass(frozen=True)
class ListEvalConfig:
  """What `evaluate_lists` measures.

  Attributes:
    recall_ks: cutoffs of retrieval recall.
    list_size: length of the served list for the end-to-end metrics.
    num_candidates: retrieval candidates the NCF scorer reranks (C).
    max_users: users evaluated: a seeded sample of those with held-out
      ratings; None evaluates all of them.
    seed: seed of the user sample.
    batch_size: users scored against the catalog at once.
  """
  recall_ks: tuple[int, ...] = (10, 50, 100)
  list_size: int = 10
  num_candidates: int = 200
  max_users: int | None = 10_000
  seed: int = 42
  batch_size: int = 512


class _UserItems:
  """Per-user movie lists in catalog positions, as CSR arrays.

  With `distinct`, a movie rated twice by a user counts once (`counts` are
  then the sizes of the users' sets of movies).
  """

  def __init__(self, ratings: data_lib.Ratings, catalog_position: np.ndarray,
               num_users: int, distinct: bool = False):
    movie = catalog_position[ratings.movie]
    keep = movie >= 0
    user, movie = ratings.user[keep], movie[keep]
    if distinct:
      pairs = np.unique(user.astype(np.int64) * len(catalog_position) + movie)
      user, movie = np.divmod(pairs, len(catalog_position))
    order = np.argsort(user, kind="stable")
    self.movies = movie[order]
    self.splits = np.concatenate(
        [[0], np.cumsum(np.bincount(user, minlength=num_users))])

  def counts(self, users: np.ndarray) -> np.ndarray:
    """How many movies each of the given users has."""
    return self.splits[users + 1] - self.splits[users]

  def rows(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in `users`, movie position) pairs for the given users."""
    lengths = self.counts(users)
    rows = np.repeat(np.arange(len(users)), lengths)
    starts = np.repeat(self.splits[users] - (np.cumsum(lengths) - lengths),
                       lengths)
    return rows, self.movies[starts + np.arange(lengths.sum())]

  def contains(self, users: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Whether each movie of `lists` [U, k] is one of its row's user's
    (`users` [U]): the hits of ranked lists, without a [U, catalog] mask."""
    rows, movies = self.rows(users)
    keys = np.sort((rows.astype(np.int64) << 32) | movies)
    probe = (np.arange(len(users), dtype=np.int64)[:, None] << 32) | lists
    if not len(keys):
      return np.zeros(lists.shape, dtype=bool)
    found = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
    return keys[found] == probe


def _list_metrics(hits: np.ndarray,
                  num_relevant: np.ndarray) -> dict[str, np.ndarray]:
  """Per-user precision, recall, NDCG and MAP of ranked lists, from their
  hits [U, k] (binary relevance: `_UserItems.contains`).

  `num_relevant` [U] counts each user's relevant movies; every user has
  one. MAP is the mean of the precisions at the hits' ranks, divided by the
  number of relevant movies.
  """
  k = hits.shape[1]
  ranks = np.arange(1, k + 1)
  discounts = 1.0 / np.log2(ranks + 1)
  ideal = np.cumsum(discounts)[np.minimum(num_relevant, k) - 1]
  precision_at_hits = np.cumsum(hits, axis=1) / ranks * hits
  return {"precision": hits.sum(axis=1) / k,
          "recall": hits.sum(axis=1) / num_relevant,
          "ndcg": (hits * discounts).sum(axis=1) / ideal,
          "map": precision_at_hits.sum(axis=1) / num_relevant}


def top_k(scores: tf.Tensor, k: int, block: int = 64) -> tuple[tf.Tensor,
                                                                 tf.Tensor]:
  """`tf.math.top_k(scores, k)` of [users, catalog] scores, faster on a large
  catalog: the same values and indices, ties included.

  Only the k column blocks with the highest maxima can hold a row's top k
  (a block outside them holds nothing above the k-th largest block maximum),
  so the top k is taken over those blocks' columns instead of the whole row.
  Blocks are kept in column order, so ties still go to the lower column, as
  in `tf.math.top_k`. `k` must not exceed the catalog.
  """
  num_users, num_columns = tf.shape(scores)[0], tf.shape(scores)[1]
  num_blocks = -(-num_columns // block)
  blocks = tf.reshape(
      tf.pad(scores, [[0, 0], [0, num_blocks * block - num_columns]],
             constant_values=-np.inf), [num_users, num_blocks, block])
  kept = tf.sort(tf.math.top_k(tf.reduce_max(blocks, axis=2),
                               tf.minimum(k, num_blocks)).indices, axis=1)
  best = tf.math.top_k(
      tf.reshape(tf.gather(blocks, kept, batch_dims=1), [num_users, -1]), k)
  columns = (tf.gather(kept, best.indices // block, batch_dims=1) * block +
             best.indices % block)
  return best.values, columns


def _concurrent_calls() -> int:
  """How many graph calls to run at once. Under TensorFlow's default thread
  pools each op already spreads over every core: one. With fewer threads
  per op (`ncf_tfrs.training.threads`), one per inter-op thread, so that
  the cores an op leaves idle rank another batch."""
  intra, inter = threads.current()
  return 1 if intra == 0 else max(1, inter)


class ListEvaluator:
  """Scores models' top-k lists on one held-out split.

  What depends only on the data (each user's seen, held-out and liked
  movies, the user sample) is worked out once, so that validation can score
  the model after every epoch without redoing it.
  """

  def __init__(self, vocabulary: data_lib.Vocabulary,
               train: data_lib.Ratings, test: data_lib.Ratings,
               config: ListEvalConfig = ListEvalConfig()):
    """Initializes the evaluator.

    Args:
      vocabulary: the model's vocabularies; the catalog is its movies.
      train: the training split (its movies are never recommended again).
      test: the held-out split, same id tables as `train`.
      config: cutoffs, candidates and user sample.
    """
    catalog = vocabulary.movie_ids
    if max(config.recall_ks + (config.list_size,)) > len(catalog):
      raise ValueError(f"cutoffs {config.recall_ks}/{config.list_size} exceed "
                       f"the catalog of {len(catalog)} movies.")
    position = {m: i for i, m in enumerate(catalog)}
    catalog_position = np.array(
        [position.get(m, -1) for m in train.movie_ids.astype(bytes)], np.int64)
    num_users = len(train.user_ids)
    self._seen = _UserItems(train, catalog_position, num_users)
    self._held_out = _UserItems(test, catalog_position, num_users,
                                distinct=True)
    self._liked = _UserItems(test.take(test.liked > 0), catalog_position,
                             num_users, distinct=True)
    users = np.flatnonzero(np.diff(self._held_out.splits) > 0)
    if config.max_users is not None and len(users) > config.max_users:
      rng = np.random.default_rng(config.seed)
      users = np.sort(rng.choice(users, config.max_users, replace=False))
    if not len(users):
      raise ValueError("No user has held-out ratings of catalog movies.")
    self._users = users
    self._user_ids = train.user_ids
    self._catalog = catalog
    self._config = config
    self._functions = None

  def _graph_functions(self, model, k: int, unmasked_k: int):
    """The model's ranking and rerank functions as graphs, traced once per
    model and cutoffs: validation calls the evaluator with the same model
    every epoch, and batches of any size share one trace.

    `top` scores a batch of users against the catalog, leaves out each
    user's seen movies ([N, 2] (row, catalog position) pairs) and returns
    the top `k` (scores, catalog positions); with `unmasked_k`, also the top
    `unmasked_k` positions with seen movies left in. The [users, catalog]
    scores never leave the graph.
    """
    if self._functions is None or self._functions[0] is not model:
      users = tf.TensorSpec([None], tf.string)
      candidates = tf.TensorSpec([None, None], tf.string)
      self._functions = (model, {
          "rerank": tf.function(model.rerank_scores,
                                input_signature=[users, candidates]),
          "ncf_rerank": tf.function(model.rerank_logits,
                                    input_signature=[users, candidates])})
    functions = self._functions[1]
    key = ("top", k, unmasked_k)
    if key not in functions:

      def top(user_ids, catalog, seen):
        scores = tf.matmul(model.query_embeddings(user_ids), catalog,
                           transpose_b=True)
        masked = tf.tensor_scatter_nd_update(
            scores, seen, tf.fill(tf.shape(seen)[:1], -np.inf))
        values, indices = top_k(masked, k)
        if not unmasked_k:
          return values, indices
        return values, indices, top_k(scores, unmasked_k)[1]

      functions[key] = tf.function(top, input_signature=[
          tf.TensorSpec([None], tf.string),
          tf.TensorSpec([None, None], tf.float32),
          tf.TensorSpec([None, 2], tf.int64)])
    return {"top": functions[key], "rerank": functions["rerank"],
            "ncf_rerank": functions["ncf_rerank"]}

  def __call__(self, model,
               retrieval_only: bool = False) -> dict[str, float]:
    """Top-k list metrics of `model` (a trained
    `ncf_tfrs.model.RecommenderModel`).

    Args:
      model: the model to score.
      retrieval_only: only `retrieval_recall_at_K` (what validation reads
        after each epoch), without the rerank and popularity lists.

    Returns:
      Metric name -> mean over evaluated users, with `eval_users` and, for
      the end-to-end metrics, `liked_eval_users` (users with a liked held-out
      movie).
    """
    catalog, users, seen = self._catalog, self._users, self._seen
    held_out, liked, config = self._held_out, self._liked, self._config
    max_k = min(max(config.recall_ks + (() if retrieval_only
                                         else (config.num_candidates,))),
                len(catalog))
    factorized_k = min(max(config.recall_ks), len(catalog))
    unmasked_k = 0 if retrieval_only else max(
        factorized_k, min(config.num_candidates, len(catalog)))
    # Called eagerly, each Keras layer call walks the whole model first.
    functions = self._graph_functions(model, max_k, unmasked_k)
    rerankers = {name: functions[name] for name in ("rerank", "ncf_rerank")}
    candidates = model.candidate_embeddings(tf.constant(catalog))
    # The vocabulary is most frequent first.
    popularity = np.arange(len(catalog))
    sums: dict[str, float] = {}
    liked_users = 0
    factorized_hits = held_out_ratings = 0

    def add(name, values):
      sums[name] = sums.get(name, 0.0) + float(values.sum())

    def reranked(rerank, user_ids, candidates, candidate_ids, keep=True):
      """The first list_size of candidates [U, C] (catalog positions,
      `candidate_ids` their ids) in `rerank`'s order; `keep` False last."""
      order = np.where(keep, rerank(user_ids, candidate_ids).numpy(), -np.inf)
      return np.take_along_axis(
          candidates,
          np.argsort(-order, axis=1, kind="stable")[:, :config.list_size],
          axis=1)

    def ranked_batch(batch):
      """A batch's user ids, seen (row, movie) pairs and the graph's top
      lists, as numpy arrays."""
      user_ids = tf.constant(self._user_ids[batch].astype(bytes))
      seen_rows = seen.rows(batch)
      return user_ids, seen_rows, [t.numpy() for t in functions["top"](
          user_ids, candidates, np.stack(seen_rows, axis=1).astype(np.int64))]

    batches = [users[start:start + config.batch_size]
               for start in range(0, len(users), config.batch_size)]
    # Batches are ranked side by side, as many as the runtime runs graphs at
    # once, and counted here in their order.
    with concurrent.futures.ThreadPoolExecutor(_concurrent_calls()) as pool:
      for batch, (user_ids, seen_rows, ranked) in zip(
          batches, pool.map(ranked_batch, batches)):
        top_scores, top = ranked[:2]
        num_relevant = held_out.counts(batch)
        if not retrieval_only:
          unmasked_top = ranked[2]
          factorized_hits += int(held_out.contains(
              batch, unmasked_top[:, :factorized_k]).sum())
          held_out_ratings += int(num_relevant.sum())
          # The list as served before rated movies were left out.
          with_seen = unmasked_top[:, :config.num_candidates]
          with_seen = reranked(rerankers["rerank"], user_ids, with_seen,
                               tf.constant(catalog[with_seen]))
        for k in config.recall_ks:
          add(f"retrieval_recall_at_{k}", _list_metrics(
              held_out.contains(batch, top[:, :k]), num_relevant)["recall"])
        if retrieval_only:
          continue

        n = config.list_size
        cands = top[:, :config.num_candidates]
        cand_ids = tf.constant(catalog[cands])
        unseen = np.isfinite(top_scores[:, :config.num_candidates])
        lists = {"retrieval": top[:, :n], "rerank_with_seen": with_seen}
        for name, rerank in rerankers.items():
          lists[name] = reranked(rerank, user_ids, cands, cand_ids, unseen)
        # The n most rated unseen movies lie within the first n + (most movies
        # a user of the batch has seen) of the catalog.
        head = popularity[:n + int(np.bincount(seen_rows[0]).max(initial=0))]
        unseen_head = ~seen.contains(batch,
                                     np.broadcast_to(head, (len(batch),
                                                            len(head))))
        lists["popularity"] = head[
            np.argsort(~unseen_head, axis=1, kind="stable")[:, :n]]
        for metric, values in _list_metrics(
            held_out.contains(batch, lists["rerank"]), num_relevant).items():
          add(f"rerank_{metric}_at_{n}", values)

        num_liked = liked.counts(batch)
        has_liked = num_liked > 0
        if not has_liked.any():
          continue
        liked_users += int(has_liked.sum())
        for name, ranked_list in lists.items():
          values = _list_metrics(
              liked.contains(batch[has_liked], ranked_list[has_liked]),
              num_liked[has_liked])
          add(f"{name}_liked_recall_at_{n}", values["recall"])
          add(f"{name}_liked_ndcg_at_{n}", values["ndcg"])

    metrics = {name: total / (liked_users if "_liked_" in name else len(users))
               for name, total in sums.items()}
    metrics["eval_users"] = len(users)
    if retrieval_only:
      return metrics
    metrics[f"factorized_top_{factorized_k}"] = (factorized_hits /
                                                 held_out_ratings)
    metrics["liked_eval_users"] = liked_users
    return metrics


def evaluate_lists(model,
                   vocabulary: data_lib.Vocabulary,
                   train: data_lib.Ratings,
                   test: data_lib.Ratings,
                   config: ListEvalConfig = ListEvalConfig()
                   ) -> dict[str, float]:
  """Top-k list metrics of `model` on the held-out ratings `test`, once
  (see `ListEvaluator`)."""
  return ListEvaluator(vocabulary, train, test, config)(model)


def held_out_sample(num_ratings: int, size: int = 200_000,
                    seed: int = 0) -> np.ndarray:
  """Sorted rows of a fixed, seeded sample of `num_ratings` held-out ratings.

  Learning curves evaluate this sample rather than the whole held-out split,
  so that a point costs about a second at ml-32m; every recipe benchmarked on
  the same split uses the same rows.
  """
  if num_ratings <= size:
    return np.arange(num_ratings)
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_ratings, size, replace=False))
