"""The SavedModels' serving signatures: the stock-op module and the ScaNN-op one.

Signatures of the stock model (all take raw string ids; batch dimension B;
names from `ncf_tfrs.serving.contract`):

  user_embedding  user_id [B] -> embedding [B, D] float32, is_fallback [B]
  score           user_id [B], movie_id [B, C] -> score, ncf_logit,
                  liked_prob [B, C] float32, is_known_movie [B, C] bool
  rerank          user_id [B], movie_id [B, C], k [] int32 -> movie_id [B, k]
                  string, score [B, k] float32, is_fallback [B] bool
  retrieve        user_id [B], k [] int32 -> movie_id [B, k], score [B, k],
                  is_fallback [B]   (exact top-k over the whole catalog)
  serving_default = retrieve
  rerank_filtered, retrieve_filtered
                  the same, with two more inputs: seen [B, S] string (movie
                  ids to leave out besides the history, "" pads) and
                  include_seen [] bool (true keeps the history in: re-watch
                  lists). TF Serving signatures have no optional inputs, so
                  these twins are how a plain client sets them.
  user_embedding_history, score_history, rerank_history, retrieve_history
                  (models with a history side) the plain four, with two
                  more inputs: history_movie_id [B, H] string ("" pads) and
                  history_rating [B, H] float32: users outside the
                  vocabulary are served from these ratings, which are left
                  out of the lists like `seen`.

`is_fallback` marks users outside the vocabulary: `retrieve` gives them the
most rated movies and `rerank` orders their candidates by popularity, rather
than an embedding of the unknown-id row passed off as personal. `score` is
the served order (`RecommenderModel.rerank_scores`: retrieval logit + NCF
log-probability), for any movies, rated or not.

`retrieve` and `rerank` never return a movie the user rated in training (the
export's `RatedHistory`, baked in; unknown users have none) nor a movie
twice, and the `_filtered` twins nor one of the request's `seen`: such
candidates, like
padding ("" in a short candidate list) and unknown movies, score
`MASKED_SCORE`, below every real candidate, and come back as id "" when
fewer than k movies are left.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf

from ncf_tfrs import data as data_lib
from ncf_tfrs import model as model_lib
from ncf_tfrs.export import scann_index
from ncf_tfrs.serving import contract
from ncf_tfrs.serving.contract import Input
from ncf_tfrs.serving.contract import Output
from ncf_tfrs.serving.contract import Signature


def _string_spec(shape: Sequence[Optional[int]], name: str) -> tf.TensorSpec:
  return tf.TensorSpec(shape, tf.string, name=name)


_K_SPEC = tf.TensorSpec([], tf.int32, name=Input.K)
_SEEN_SPEC = tf.TensorSpec([None, None], tf.string, name=Input.SEEN)
_INCLUDE_SEEN_SPEC = tf.TensorSpec([], tf.bool, name=Input.INCLUDE_SEEN)


def _pad_to(ids: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  """[B, C] ids right-padded with the padding id to at least `width`."""
  extra = tf.maximum(width - tf.shape(ids)[1], 0)
  return tf.pad(ids, [[0, 0], [0, extra]],
                constant_values=contract.PADDING_ID)


class _Untracked:
  """Holds an object without making it part of a SavedModel."""

  def __init__(self, value):
    self.value = value


_HISTORY_SPECS = [_string_spec([None, None], Input.HISTORY_MOVIE_ID),
                  tf.TensorSpec([None, None], tf.float32,
                                name=Input.HISTORY_RATING)]


class _UserSide(NamedTuple):
  """What the served order needs of each user [B]: the retrieval query, the
  NCF user row, and whether the user gets the popularity fallback."""
  query: tf.Tensor
  ncf: tf.Tensor
  is_fallback: tf.Tensor


class ServingModule(tf.Module):
  """The stock-op serving graph: the model plus its catalog, baked in.

  Its functions call the trained `RecommenderModel` (whose StringLookup
  layers map raw ids in the graph) and it keeps the model's variables and
  lookup tables, the catalog's candidate embeddings as a variable (so exact
  retrieval is one matmul and `tf.math.top_k`), and the popularity order for
  users outside the vocabulary. The movie catalog is the model's movie
  vocabulary, which is most rated first: its first k ids are the popularity
  list.
  """

  def __init__(self, model: model_lib.RecommenderModel,
               vocabulary: data_lib.Vocabulary,
               history: Optional[data_lib.RatedHistory] = None) -> None:
    super().__init__(name="ncf_tfrs_serving")
    # The functions below call the Keras model, but the SavedModel keeps only
    # what they capture: its variables and lookup tables. Saving the Keras
    # objects themselves would serialize every layer's config, vocabularies
    # included (minutes at ml-32m's 200k users), for nothing TF Serving uses.
    self._keras = _Untracked(model)
    self.model_variables = list(model.variables)
    # (model.submodules would find them too, but walks the 200k-id
    # vocabulary lists element by element.)
    # The NCF tables share these two lookups.
    self.lookup_tables = [model.query_tower.lookup.lookup_table,
                          model.candidate_tower.lookup.lookup_table]
    movie_ids = np.asarray(vocabulary.movie_ids).astype(bytes)
    self._num_movies = len(movie_ids)
    self.catalog = tf.Variable(movie_ids, trainable=False, name="catalog")
    self.catalog_embeddings = tf.Variable(
        model.candidate_embeddings(tf.constant(movie_ids)),
        trainable=False, name="catalog_embeddings")
    # Rated movies per user lookup row (row 0, unknown users, has none).
    if history is None:
      splits = np.zeros(len(vocabulary.user_ids) + 1, np.int64)
      rated = np.zeros(0, np.int32)
    else:
      if list(history.user_ids) != list(np.asarray(vocabulary.user_ids,
                                                   dtype=bytes)):
        raise ValueError("The rated history is not over this vocabulary's "
                         "users.")
      splits, rated = history.row_splits, history.movies
    self.rated_row_splits = tf.Variable(
        np.concatenate([[0], splits]).astype(np.int64), trainable=False,
        name="rated_row_splits")
    self.rated_movies = tf.Variable(rated.astype(np.int32), trainable=False,
                                    name="rated_movies")
    counts = np.asarray(vocabulary.movie_counts, dtype=np.float64)
    # Held by the module, so the SavedModel keeps them.
    self.history_functions = (self._history_functions()
                              if model.config.history_share else {})
    self.log_popularity = tf.Variable(
        np.log(np.maximum(counts, 1) / max(counts.sum(), 1)).astype(
            np.float32),
        trainable=False, name="log_popularity")

  @property
  def model(self) -> model_lib.RecommenderModel:
    return self._keras.value

  def _is_fallback(self, user_ids: tf.Tensor) -> tf.Tensor:
    """Unknown users, from their ids or their table rows."""
    return tf.equal(self.model.user_rows(user_ids), 0)

  def _id_side(self, user_id: tf.Tensor) -> _UserSide:
    rows = self.model.user_rows(user_id)
    return _UserSide(self.model.query_embeddings(rows),
                     self.model.ncf.user_embedding(rows),
                     self._is_fallback(rows))

  def _history_side(self, user_id: tf.Tensor, history_movie_id: tf.Tensor,
                    history_rating: tf.Tensor) -> _UserSide:
    """Users known by id keep their id's rows; the others are served from
    the ratings in the request, or, with none of a known movie, get the
    popularity fallback."""
    history_movie_id = self._one_row_per_user(
        user_id, history_movie_id, f"{Input.HISTORY_MOVIE_ID} [B, H]",
        "rated movies")
    check = tf.debugging.assert_equal(
        tf.shape(history_movie_id), tf.shape(history_rating),
        message=f"{Input.HISTORY_MOVIE_ID} and {Input.HISTORY_RATING} must "
        "have the same shape [B, H] (one rating per movie id)")
    with tf.control_dependencies([check]):
      history_rating = tf.identity(history_rating)
    by_id = self._id_side(user_id)
    by_history = self.model.encode_history(history_movie_id, history_rating)
    known = ~by_id.is_fallback
    has_history = tf.reduce_any(self._movie_index(history_movie_id) >= 0,
                                axis=1)
    return _UserSide(
        tf.where(known[:, tf.newaxis], by_id.query, by_history["query"]),
        tf.where(known[:, tf.newaxis], by_id.ncf, by_history["ncf"]),
        ~known & ~has_history)

  def _movie_index(self, movie_ids: tf.Tensor) -> tf.Tensor:
    """Catalog row of each movie id (or table row), -1 for unknown ones."""
    return self.model.movie_rows(movie_ids) - 1

  def _rated_rows(self, user_ids: tf.Tensor) -> tf.RaggedTensor:
    """[B, (rated)] int32: each user's rated catalog rows, ascending."""
    rows = self.model.query_tower.lookup(user_ids)
    positions = tf.ragged.range(tf.gather(self.rated_row_splits, rows),
                                tf.gather(self.rated_row_splits, rows + 1))
    return tf.gather(self.rated_movies, positions)

  def _catalog_mask(self, movies: tf.RaggedTensor) -> tf.Tensor:
    """[B, num_movies] bool: True at each row's catalog rows [B, (n)]."""
    indices = tf.stack([movies.value_rowids(),
                        tf.cast(movies.flat_values, tf.int64)], axis=1)
    shape = tf.stack([movies.nrows(),
                      tf.constant(self._num_movies, tf.int64)])
    return tf.scatter_nd(indices, tf.ones(tf.shape(indices)[:1]), shape) > 0

  def _is_rated(self, user_ids: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """[B, C] bool: whether each user rated each of its catalog rows [B, C].

    A binary search in each user's ascending history, so that the cost
    grows with the history and the candidates, not with the catalog.
    """
    # -1 pads the rows (no catalog row is negative), one column at least.
    rated = self._rated_rows(user_ids).to_tensor(default_value=-1)
    rated = tf.pad(rated, [[0, 0], [0, 1]], constant_values=-1)
    rated = tf.where(rated < 0, tf.int32.max, rated)  # Padding sorts last.
    index = tf.cast(index, tf.int32)
    found = tf.searchsorted(rated, index)
    return tf.gather(rated, tf.minimum(found, tf.shape(rated)[1] - 1),
                     batch_dims=1) == index

  def _check_k(self, k: tf.Tensor, limit: tf.Tensor, what: str):
    return tf.debugging.assert_equal(
        tf.logical_and(k >= 1, k <= limit), True,
        message=f"k must be between 1 and the number of {what}")

  def _one_row_per_user(self, user_id: tf.Tensor, rows: tf.Tensor,
                        name: str, what: str) -> tf.Tensor:
    """`rows` (input `name`), checked to have one row per user: a mismatch
    fails naming both inputs, not deep inside the scorer's einsum."""
    check = tf.debugging.assert_equal(
        tf.shape(user_id)[0], tf.shape(rows)[0],
        message=f"{Input.USER_ID} [B] and {name} must have the same number "
        f"of rows B (one row of {what} per user)")
    with tf.control_dependencies([check]):
      return tf.identity(rows)

  @tf.function(input_signature=[_string_spec([None], Input.USER_ID)])
  def user_embedding(self, user_id):
    """Query embeddings; fallback users get the unknown-id row, flagged."""
    return {
        Output.EMBEDDING: self.model.query_embeddings(user_id),
        Output.IS_FALLBACK: self._is_fallback(user_id),
    }

  @tf.function(input_signature=[
      _string_spec([None], Input.USER_ID),
      _string_spec([None, None], Input.MOVIE_ID)])
  def score(self, user_id, movie_id):
    """Every score of users [B] against their movies [B, C]."""
    return self._score(user_id, movie_id, self._id_side(user_id))

  def _score(self, user_id, movie_id, side: _UserSide):
    movie_id = self._one_row_per_user(user_id, movie_id,
                                       f"{Input.MOVIE_ID} [B, C]", "movies")
    rows = self.model.movie_rows(movie_id)
    logits = self.model.ncf.score_rows(side.ncf, rows)
    return {
        Output.SCORE: self.model.served_scores(side.query, side.ncf, rows),
        Output.NCF_LOGIT: logits,
        Output.LIKED_PROB: tf.sigmoid(logits),
        Output.IS_KNOWN_MOVIE: rows > 0,
    }

  def _in_seen(self, index: tf.Tensor, seen: tf.Tensor) -> tf.Tensor:
    """[B, C] bool: whether each catalog row of index [B, C] is among the
    request's `seen` movie ids [B, S] (unknown ids and "" match nothing)."""
    seen = self._movie_index(seen)
    return tf.reduce_any((index[:, :, tf.newaxis] == seen[:, tf.newaxis, :]) &
                         (seen >= 0)[:, tf.newaxis, :], axis=2)

  def _rerank(self, user_id, movie_id, k, seen, include_seen,
              side: _UserSide):
    movie_id = self._one_row_per_user(user_id, movie_id,
                                       f"{Input.MOVIE_ID} [B, C]", "movies")
    seen = self._one_row_per_user(user_id, seen, f"{Input.SEEN} [B, S]",
                                   "seen movies")
    with tf.control_dependencies(
        [self._check_k(k, tf.shape(movie_id)[1], "candidates")]):
      k = tf.identity(k)
    is_fallback = side.is_fallback
    rows = self.model.movie_rows(movie_id)
    index = self._movie_index(rows)
    popularity = tf.gather(self.log_popularity, tf.maximum(index, 0))
    scores = tf.where(is_fallback[:, tf.newaxis], popularity,
                      self.model.served_scores(side.query, side.ncf, rows))
    rated = self._is_rated(user_id, tf.maximum(index, 0)) & ~include_seen
    # A candidate that an earlier one in its row repeats: [i, j] is i < j.
    position = tf.range(tf.shape(movie_id)[1])
    earlier = position[:, tf.newaxis] < position[tf.newaxis, :]
    repeat = tf.reduce_any(
        (index[:, :, tf.newaxis] == index[:, tf.newaxis, :]) &
        earlier[tf.newaxis], axis=1)
    servable = ((index >= 0) & ~rated & ~repeat &
                ~self._in_seen(index, seen))
    scores = tf.where(servable, scores, contract.MASKED_SCORE)
    top = tf.math.top_k(scores, k)
    movies = tf.gather(movie_id, top.indices, batch_dims=1)
    return {
        Output.MOVIE_ID: tf.where(top.values > contract.MASKED_SCORE, movies,
                                  contract.PADDING_ID),
        Output.SCORE: top.values,
        Output.IS_FALLBACK: is_fallback,
    }

  def _retrieve(self, user_id, k, seen, include_seen, side: _UserSide):
    seen = self._one_row_per_user(user_id, seen, f"{Input.SEEN} [B, S]",
                                   "seen movies")
    with tf.control_dependencies(
        [self._check_k(k, self._num_movies, "movies")]):
      k = tf.identity(k)
    is_fallback = side.is_fallback
    logits = tf.matmul(side.query, self.catalog_embeddings, transpose_b=True)
    # Unknown users rank the catalog by popularity (most rated first).
    logits = tf.where(is_fallback[:, tf.newaxis],
                      self.log_popularity[tf.newaxis, :], logits)
    seen = self._movie_index(seen)
    left_out = ((self._catalog_mask(self._rated_rows(user_id)) &
                 ~include_seen) |
                self._catalog_mask(tf.ragged.boolean_mask(seen, seen >= 0)))
    top = tf.math.top_k(tf.where(left_out, contract.MASKED_SCORE, logits), k)
    return {
        Output.MOVIE_ID: tf.where(top.values > contract.MASKED_SCORE,
                                  tf.gather(self.catalog, top.indices),
                                  contract.PADDING_ID),
        Output.SCORE: top.values,
        Output.IS_FALLBACK: is_fallback,
    }

  def _no_seen(self, user_id: tf.Tensor) -> tf.Tensor:
    return tf.fill(tf.stack([tf.shape(user_id)[0], 0]), contract.PADDING_ID)

  @tf.function(input_signature=[
      _string_spec([None], Input.USER_ID),
      _string_spec([None, None], Input.MOVIE_ID), _K_SPEC])
  def rerank(self, user_id, movie_id, k):
    """The top k of each user's candidates in the served order."""
    return self._rerank(user_id, movie_id, k, self._no_seen(user_id),
                        tf.constant(False), self._id_side(user_id))

  @tf.function(input_signature=[
      _string_spec([None], Input.USER_ID),
      _string_spec([None, None], Input.MOVIE_ID), _K_SPEC, _SEEN_SPEC,
      _INCLUDE_SEEN_SPEC])
  def rerank_filtered(self, user_id, movie_id, k, seen, include_seen):
    """`rerank`, also leaving out `seen`; `include_seen` keeps the
    training history in."""
    return self._rerank(user_id, movie_id, k, seen, include_seen,
                        self._id_side(user_id))

  @tf.function(input_signature=[_string_spec([None], Input.USER_ID),
                                _K_SPEC])
  def retrieve(self, user_id, k):
    """Exact top k of the whole catalog by retrieval logit (stock ops)."""
    return self._retrieve(user_id, k, self._no_seen(user_id),
                          tf.constant(False), self._id_side(user_id))

  @tf.function(input_signature=[_string_spec([None], Input.USER_ID), _K_SPEC,
                                _SEEN_SPEC, _INCLUDE_SEEN_SPEC])
  def retrieve_filtered(self, user_id, k, seen, include_seen):
    """`retrieve`, also leaving out `seen`; `include_seen` keeps the
    training history in."""
    return self._retrieve(user_id, k, seen, include_seen,
                          self._id_side(user_id))

  def _history_functions(self) -> dict:
    """The `*_history` signatures' functions, made only for a model with a
    history side (a SavedModel traces every function its module holds)."""
    user = _string_spec([None], Input.USER_ID)
    movies = _string_spec([None, None], Input.MOVIE_ID)

    def user_embedding_history(user_id, history_movie_id, history_rating):
      side = self._history_side(user_id, history_movie_id, history_rating)
      return {Output.EMBEDDING: side.query,
              Output.IS_FALLBACK: side.is_fallback}

    def score_history(user_id, history_movie_id, history_rating, movie_id):
      return self._score(user_id, movie_id, self._history_side(
          user_id, history_movie_id, history_rating))

    def rerank_history(user_id, history_movie_id, history_rating, movie_id,
                       k):
      # The request's rated movies are left out, like `seen` ones.
      return self._rerank(user_id, movie_id, k, history_movie_id,
                          tf.constant(False), self._history_side(
                              user_id, history_movie_id, history_rating))

    def retrieve_history(user_id, history_movie_id, history_rating, k):
      return self._retrieve(user_id, k, history_movie_id, tf.constant(False),
                            self._history_side(user_id, history_movie_id,
                                               history_rating))

    return {
        Signature.USER_EMBEDDING_HISTORY: tf.function(
            user_embedding_history, input_signature=[user, *_HISTORY_SPECS]),
        Signature.SCORE_HISTORY: tf.function(
            score_history, input_signature=[user, *_HISTORY_SPECS, movies]),
        Signature.RERANK_HISTORY: tf.function(
            rerank_history,
            input_signature=[user, *_HISTORY_SPECS, movies, _K_SPEC]),
        Signature.RETRIEVE_HISTORY: tf.function(
            retrieve_history, input_signature=[user, *_HISTORY_SPECS, _K_SPEC]),
    }

  def signatures(self) -> dict:
    return {
        **{name: function.get_concrete_function()
           for name, function in self.history_functions.items()},
        Signature.USER_EMBEDDING: self.user_embedding.get_concrete_function(),
        Signature.SCORE: self.score.get_concrete_function(),
        Signature.RERANK: self.rerank.get_concrete_function(),
        Signature.RERANK_FILTERED: self.rerank_filtered.get_concrete_function(),
        Signature.RETRIEVE: self.retrieve.get_concrete_function(),
        Signature.RETRIEVE_FILTERED:
            self.retrieve_filtered.get_concrete_function(),
        Signature.DEFAULT: self.retrieve.get_concrete_function(),
    }


class ScannServingModule(ServingModule):
  """The stock module plus ScaNN inside: needs the scann TF ops to load.

  For in-process serving and custom TF Serving builds that link ScaNN; stock
  TF Serving refuses it ("Op type not registered 'Scann>...'").

  Extra signatures:
    scann_retrieve  user_id [B] -> movie_id [B, C], score [B, C], is_fallback
    recommend       user_id [B], k [] -> movie_id [B, k], score, is_fallback:
                    ScaNN's top C unrated movies, then `rerank`, in one
                    call (k distinct unrated movies while k are left).
    recommend_history  the same for users given by their ratings
                    (`history_movie_id`, `history_rating` [B, H], as the
                    `*_history` signatures take them; only for a model with
                    a history side); the history's movies are left out.
  """

  def __init__(self, model: model_lib.RecommenderModel,
               vocabulary: data_lib.Vocabulary,
               settings: dict,
               history: Optional[data_lib.RatedHistory] = None) -> None:
    super().__init__(model, vocabulary, history)
    from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top
    builder = scann_ops.builder(self.catalog_embeddings.numpy(),
                                settings["num_neighbors"], "dot_product")
    self.scann = scann_index.configure_scann(builder, settings).build().serialize_to_module()
    self._num_neighbors = settings["num_neighbors"]
    self._num_reordered = settings["reordering_num_neighbors"]
    self._num_leaves = settings["num_leaves"] or -1  # -1: no tree.
    if self.history_functions:
      self.recommend_history = tf.function(
          lambda user_id, history_movie_id, history_rating, k:
          self._recommend(user_id, k, history_movie_id, self._history_side(
              user_id, history_movie_id, history_rating)),
          input_signature=[_string_spec([None], Input.USER_ID),
                           *_HISTORY_SPECS, _K_SPEC])

  def _search(self, queries: tf.Tensor, size: tf.Tensor,
              leaves: int = -1) -> tuple[tf.Tensor, tf.Tensor]:
    """ScaNN's top `size` [B, size]: catalog rows and scores, NaN-padded
    where the searched leaves (-1: the index's default) hold fewer."""
    from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top
    searcher = scann_ops.searcher_from_module(self.scann)
    return searcher.search_batched(
        queries, size, tf.maximum(size, self._num_reordered), leaves)

  @tf.function(input_signature=[_string_spec([None], Input.USER_ID)])
  def scann_retrieve(self, user_id):
    indices, scores = self._search(self.model.query_embeddings(user_id),
                                   tf.constant(self._num_neighbors))
    # Where the searched leaves held fewer than C movies, ScaNN pads with
    # index 0 and a NaN score; padding ids are masked by `rerank`.
    padded = tf.math.is_nan(scores)
    return {
        Output.MOVIE_ID: tf.where(padded, contract.PADDING_ID,
                             tf.gather(self.catalog, indices)),
        Output.SCORE: tf.where(padded, contract.MASKED_SCORE, scores),
        Output.IS_FALLBACK: self._is_fallback(user_id),
    }

  @tf.function(input_signature=[_string_spec([None], Input.USER_ID),
                                _K_SPEC])
  def recommend(self, user_id, k):
    """ScaNN's C best movies the user has not rated, reranked: top k."""
    return self._recommend(user_id, k, self._no_seen(user_id),
                           self._id_side(user_id))

  def _recommend(self, user_id, k, seen, side: _UserSide):
    """ScaNN's C best movies for `side`'s queries, less the user's rated
    ones and `seen` [B, S], reranked: top k.

    The search fetches C more than the batch's longest history (training's
    plus `seen`), and searches every leaf when the default leaves still
    leave a user short of C unrated movies, so a heavy user gets as full a
    list as a light one.
    """
    rows = self.model.query_tower.lookup(user_id)
    num_seen = tf.reduce_sum(tf.cast(seen != contract.PADDING_ID, tf.int64),
                             axis=1)
    num_rated = (tf.gather(self.rated_row_splits, rows + 1) -
                 tf.gather(self.rated_row_splits, rows) + num_seen)
    longest = tf.reduce_max(tf.concat([num_rated, [0]], axis=0))
    size = tf.cast(tf.minimum(self._num_neighbors + longest,
                              self._num_movies), tf.int32)
    # The unrated movies each user can get: C, or fewer if it rated nearly all.
    wanted = tf.cast(tf.minimum(tf.maximum(self._num_movies - num_rated, 0),
                                self._num_neighbors), tf.int32)

    def unrated(found):
      index, scores = found
      keep = (~tf.math.is_nan(scores) & ~self._is_rated(user_id, index) &
              ~self._in_seen(tf.cast(index, tf.int64), seen))
      return index, tf.where(keep, scores, contract.MASKED_SCORE), keep

    index, scores, keep = unrated(self._search(side.query, size))
    if self._num_leaves > 0:
      short = tf.reduce_any(
          tf.reduce_sum(tf.cast(keep, tf.int32), axis=1) < wanted)
      index, scores, keep = tf.cond(
          short,
          lambda: unrated(self._search(side.query, size, self._num_leaves)),
          lambda: (index, scores, keep))
    best = tf.math.top_k(scores, tf.minimum(self._num_neighbors, size))
    candidates = tf.where(best.values > contract.MASKED_SCORE,
                          tf.gather(self.catalog,
                                    tf.gather(index, best.indices,
                                              batch_dims=1)),
                          contract.PADDING_ID)
    # Users on the fallback: the most rated movies, C more than the
    # batch's longest `seen` among them, which the rerank leaves out.
    popular = self.catalog[:tf.cast(tf.minimum(
        self._num_neighbors + tf.reduce_max(tf.concat(
            [tf.where(side.is_fallback, num_seen, 0), [0]], axis=0)),
        self._num_movies), tf.int32)]
    popular = tf.broadcast_to(popular, tf.stack([tf.shape(user_id)[0],
                                                 tf.shape(popular)[0]]))
    width = tf.maximum(tf.shape(popular)[1], tf.shape(candidates)[1])
    candidates = tf.where(side.is_fallback[:, tf.newaxis],
                          _pad_to(popular, width),
                          _pad_to(candidates, width))
    return self._rerank(user_id, candidates, k, seen, tf.constant(False),
                        side)

  def signatures(self) -> dict:
    return {**super().signatures(),
            Signature.SCANN_RETRIEVE: self.scann_retrieve.get_concrete_function(),
            Signature.RECOMMEND: self.recommend.get_concrete_function(),
            **({Signature.RECOMMEND_HISTORY:
                self.recommend_history.get_concrete_function()}
               if self.history_functions else {})}
