"""Top-k list metrics against lists worked out by hand on two users."""

import math

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import pytest
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs.training import cold_users
from ncf_tfrs.training import evaluation

USERS = np.array([b"u0", b"u1"], dtype=object)
MOVIES = np.array([b"a", b"b", b"c", b"d"], dtype=object)
# Retrieval scores per user over a, b, c, d (the query tower's output).
RETRIEVAL = {b"u0": [4.0, 3.0, 2.0, 1.0], b"u1": [1.0, 2.0, 3.0, 4.0]}
# The served rerank score and the NCF logit of each (user, movie).
RERANK = {b"u0": {b"a": 6.0, b"b": 0.0, b"c": 5.0, b"d": 1.0},
          b"u1": {b"c": 0.0, b"b": 1.0, b"a": 2.0, b"d": 3.0}}
NCF = {b"u0": {b"b": 9.0, b"c": 0.0, b"d": 0.0},
       b"u1": {b"c": 3.0, b"b": 2.0, b"a": 1.0}}


class _Model:
  """The four calls `evaluate_lists` makes, answered from the tables above
  with TensorFlow ops, as the model's own would be (they run in a graph)."""

  def __init__(self):
    self._users = tf.keras.layers.StringLookup(vocabulary=USERS,
                                               num_oov_indices=0)
    self._movies = tf.keras.layers.StringLookup(vocabulary=MOVIES,
                                                num_oov_indices=0)

  def _table(self, table):
    return tf.constant([[table[u].get(m, -100.0) for m in MOVIES]
                        for u in USERS])

  def query_embeddings(self, user_ids):
    return tf.gather(tf.constant([RETRIEVAL[u] for u in USERS]),
                     self._users(user_ids))

  def candidate_embeddings(self, movie_ids):
    return tf.eye(len(movie_ids))

  def _lookup(self, table, user_ids, movie_ids):
    return tf.gather(tf.gather(self._table(table), self._users(user_ids)),
                     self._movies(movie_ids), batch_dims=1)

  def rerank_scores(self, user_ids, movie_ids):
    return self._lookup(RERANK, user_ids, movie_ids)

  def rerank_logits(self, user_ids, movie_ids):
    return self._lookup(NCF, user_ids, movie_ids)


def _ratings(rows):
  user, movie, rating = zip(*rows)
  return data_lib.Ratings(
      user_ids=USERS, movie_ids=MOVIES,
      user=np.array(user, np.int32), movie=np.array(movie, np.int32),
      rating=np.array(rating, np.float32),
      timestamp=np.zeros(len(rows), np.int64))


def _two_users():
  """(vocabulary, train, test, config) of the hand-worked example."""
  a, b, _, d = range(4)
  # Training: u0 rated a, u1 rated d; neither is recommended to them again.
  train = _ratings([(0, a, 4.0), (1, d, 3.0)])
  # Held out: u0 b (liked), d (not liked); u1 a and b (both liked).
  test = _ratings([(0, b, 5.0), (0, d, 2.0), (1, a, 4.0), (1, b, 5.0)])
  vocabulary = data_lib.Vocabulary(USERS.astype(bytes), MOVIES.astype(bytes),
                                   np.array([4, 3, 2, 1]))
  config = evaluation.ListEvalConfig(recall_ks=(1, 2), list_size=2,
                                     num_candidates=3, max_users=None)
  return vocabulary, train, test, config


def test_list_metrics_equal_the_hand_computed_values():
  a, b, _, d = range(4)
  vocabulary, train, test, config = _two_users()
  metrics = evaluation.evaluate_lists(_Model(), vocabulary, train, test,
                                      config)

  # Retrieval, seen movies masked: u0 ranks b, c, d; u1 ranks c, b, a.
  # recall@1: u0 1/2 (b), u1 0/2; recall@2: u0 1/2, u1 1/2 (b).
  assert metrics["retrieval_recall_at_1"] == pytest.approx(0.25)
  assert metrics["retrieval_recall_at_2"] == pytest.approx(0.5)
  assert metrics["eval_users"] == 2 and metrics["liked_eval_users"] == 2
  # The tutorial's protocol ranks rated movies too: u0's top 2 is [a, b]
  # (b held out), u1's [d, c] (none): 1 of 4 held-out ratings.
  assert metrics["factorized_top_2"] == pytest.approx(0.25)

  ndcg_second_of_two = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
  expected = {
      # u0 [b, c]: 1/1, NDCG 1; u1 [c, b]: 1/2, hit at rank 2 of 2 liked.
      "retrieval": (0.75, (1 + ndcg_second_of_two) / 2),
      # Candidates u0 [b, c, d] -> [c, d]: 0; u1 [c, b, a] -> [a, b]: 1.
      "rerank": (0.5, 0.5),
      # u0 -> [b, c] (c before d on the tie): 1; u1 -> [c, b]: 1/2.
      "ncf_rerank": (0.75, (1 + ndcg_second_of_two) / 2),
      # Most rated unseen: u0 [b, c]: 1; u1 [a, b]: 1.
      "popularity": (1.0, 1.0),
      # Rated movies left in, as served before they were left out: top 3
      # u0 [a, b, c] -> [a, c]: 0 (a rated, and rated first); u1 [d, c, b]
      # -> [d, b]: 1/2, hit at rank 2.
      "rerank_with_seen": (0.25, ndcg_second_of_two / 2),
  }
  for name, (recall, ndcg) in expected.items():
    assert metrics[f"{name}_liked_recall_at_2"] == pytest.approx(recall), name
    assert metrics[f"{name}_liked_ndcg_at_2"] == pytest.approx(ndcg), name

  # The served list by the literature's protocol, every held-out movie
  # relevant: u0 [c, d] hits d at rank 2 of {b, d}: precision 1/2, recall
  # 1/2, AP (1/2) / 2; u1 [a, b] hits both: 1, 1, NDCG 1, AP (1 + 1) / 2.
  served = {"precision": 0.75, "recall": 0.75,
            "ndcg": (ndcg_second_of_two + 1) / 2, "map": (0.25 + 1) / 2}
  for name, value in served.items():
    assert metrics[f"rerank_{name}_at_2"] == pytest.approx(value), name

  # A held-out rating given twice (u1 rated b twice) counts once.
  twice = _ratings([(0, b, 5.0), (0, d, 2.0), (1, a, 4.0), (1, b, 5.0),
                    (1, b, 4.5)])
  assert evaluation.evaluate_lists(_Model(), vocabulary, train, twice,
                                   config) == pytest.approx(metrics)

  # What validation reads after each epoch: the same recalls, nothing else.
  assert evaluation.ListEvaluator(vocabulary, train, test, config)(
      _Model(), retrieval_only=True) == {
          "retrieval_recall_at_1": metrics["retrieval_recall_at_1"],
          "retrieval_recall_at_2": metrics["retrieval_recall_at_2"],
          "eval_users": 2}


@pytest.mark.parametrize("concurrent_calls", [1, 2])
def test_batches_ranked_side_by_side_count_as_one_batch(concurrent_calls,
                                                        monkeypatch):
  # One user per batch; with two calls at once (the train command's thread
  # pools), each batch's lists must still meet that batch's users.
  vocabulary, train, test, config = _two_users()
  whole = evaluation.evaluate_lists(_Model(), vocabulary, train, test, config)
  monkeypatch.setattr(evaluation, "_concurrent_calls",
                      lambda: concurrent_calls)
  one_by_one = evaluation.evaluate_lists(
      _Model(), vocabulary, train, test,
      evaluation.ListEvalConfig(**{**config.__dict__, "batch_size": 1}))
  assert one_by_one == pytest.approx(whole)
  assert one_by_one["retrieval_recall_at_1"] == pytest.approx(0.25)


@pytest.mark.parametrize("num_columns,k", [(1000, 100), (130, 3), (130, 130),
                                            (64, 10), (5, 5)])
def test_blocked_top_k_equals_tf_top_k_ties_and_masks_included(num_columns,
                                                              k):
  rng = np.random.default_rng(num_columns + k)
  # Few distinct values (many ties) and a third of the columns masked.
  scores = rng.integers(0, 8, (6, num_columns)).astype(np.float32)
  scores[rng.random(scores.shape) < 0.3] = -np.inf
  scores[0] = -np.inf  # A user who has seen everything.
  values, indices = evaluation.top_k(tf.constant(scores), k, block=8)
  expected = tf.math.top_k(scores, k)
  np.testing.assert_array_equal(values.numpy(), expected.values.numpy())
  np.testing.assert_array_equal(indices.numpy(), expected.indices.numpy())


def test_users_sample_is_seeded_and_cutoffs_are_checked():
  train = _ratings([(0, 0, 4.0), (1, 3, 3.0)])
  test = _ratings([(0, 1, 5.0), (1, 0, 4.0)])
  vocabulary = data_lib.Vocabulary(USERS.astype(bytes), MOVIES.astype(bytes),
                                   np.array([4, 3, 2, 1]))
  one = evaluation.ListEvalConfig(recall_ks=(1,), list_size=1,
                                  num_candidates=2, max_users=1)
  assert evaluation.evaluate_lists(_Model(), vocabulary, train, test,
                                   one)["eval_users"] == 1
  with pytest.raises(ValueError, match="exceed the catalog"):
    evaluation.evaluate_lists(
        _Model(), vocabulary, train, test,
        evaluation.ListEvalConfig(recall_ks=(5,), list_size=1))


COLD_CATALOG = np.array([b"c", b"a", b"b", b"d", b"e", b"f"], dtype=object)
# Retrieval score of each movie for a user with an empty history; a movie in
# the history scores 10 more times its rating.
COLD_BASE = {b"a": 6.0, b"b": 1.0, b"c": 5.0, b"d": 4.0, b"e": 3.0, b"f": 2.0}
COLD_RERANK = {b"a": 1.0, b"b": 0.0, b"c": 0.0, b"d": 0.0, b"e": 9.0,
               b"f": 8.0}


class _HistoryModel:
  """The calls of `ColdUserEvaluator`, as TensorFlow ops over the catalog."""

  def __init__(self):
    self._movies = tf.keras.layers.StringLookup(vocabulary=COLD_CATALOG,
                                                num_oov_indices=1)

  def candidate_embeddings(self, movie_ids):
    return tf.eye(len(movie_ids))

  def history_query_embeddings(self, history_movie_ids, history_ratings):
    base = tf.constant([[COLD_BASE[m] for m in COLD_CATALOG]])
    given = tf.one_hot(self._movies(history_movie_ids) - 1,
                       len(COLD_CATALOG)) * history_ratings[..., None]
    return base + 10.0 * tf.reduce_sum(given, axis=1)

  def history_rerank_scores(self, history_movie_ids, history_ratings,
                            movie_ids):
    scores = tf.constant([0.0] + [COLD_RERANK[m] for m in COLD_CATALOG])
    return tf.gather(scores, self._movies(movie_ids))


def test_cold_users_are_served_from_their_first_ratings():
  users = np.array([b"n0", b"n1"], dtype=object)
  movies = np.array([b"a", b"b", b"c", b"d", b"e", b"f"], dtype=object)
  # n0 gives b and d (its first two by time) and then likes a and e; n1 has
  # nothing after its first two and is not scored.
  rows = [(0, 4, 4.0, 4), (0, 1, 5.0, 1), (0, 3, 2.0, 2), (0, 0, 5.0, 3),
          (0, 2, 1.0, 5), (1, 0, 5.0, 1), (1, 1, 5.0, 2)]
  user, movie, rating, time = zip(*rows)
  held_out = data_lib.Ratings(
      user_ids=users, movie_ids=movies, user=np.array(user, np.int32),
      movie=np.array(movie, np.int32), rating=np.array(rating, np.float32),
      timestamp=np.array(time, np.int64))
  vocabulary = data_lib.Vocabulary(user_ids=np.array([b"x"], dtype=object),
                                   movie_ids=COLD_CATALOG,
                                   movie_counts=np.arange(6, 0, -1))
  metrics = cold_users.ColdUserEvaluator(
      vocabulary, held_out, num_given=2,
      config=evaluation.ListEvalConfig(list_size=2, num_candidates=4))(
          _HistoryModel())
  ideal = 1 + 1 / math.log2(3)
  assert metrics["cold_users"] == 1
  # Retrieval, b and d left out: a, c (then e, f as candidates).
  assert metrics["history_retrieval_liked_recall_at_2"] == 0.5
  assert metrics["history_retrieval_liked_ndcg_at_2"] == pytest.approx(
      1 / ideal)
  # Served: the four candidates reranked: e, f.
  assert metrics["history_served_liked_recall_at_2"] == 0.5
  assert metrics["history_served_liked_ndcg_at_2"] == pytest.approx(1 / ideal)
  # Most rated unseen: c, a.
  assert metrics["popularity_liked_recall_at_2"] == 0.5
  assert metrics["popularity_liked_ndcg_at_2"] == pytest.approx(
      1 / math.log2(3) / ideal)
