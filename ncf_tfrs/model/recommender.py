"""The trained model: two-tower retrieval and NCF ranking in one TFRS model.

`RecommenderModel` holds the user (query) and movie (candidate) towers, trained
with an in-batch softmax retrieval task, and the NCF scorer, trained with a
binary "liked" ranking task, as in the TFRS multitask tutorial. The two tasks
share no variables; one input pipeline feeds both, and each task can be
switched off by giving it weight 0.
"""

import math
from typing import List, Mapping, Optional

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ncf_tfrs import features
from ncf_tfrs.model import history
from ncf_tfrs.model import ncf
from ncf_tfrs.model import towers
from ncf_tfrs.model.config import ModelConfig
from ncf_tfrs.model.losses import InBatchSoftmaxLoss


class _OnProbabilities:
  """Mixin: feeds sigmoid(logits) to a metric defined on probabilities."""

  def update_state(self, y_true, y_pred, sample_weight=None):
    return super().update_state(y_true, tf.sigmoid(y_pred), sample_weight)


class _ProbabilityMeanSquaredError(
    _OnProbabilities, tf.keras.metrics.MeanSquaredError):
  pass


class _ProbabilityMeanAbsoluteError(
    _OnProbabilities, tf.keras.metrics.MeanAbsoluteError):
  pass


class RatingThresholds(tf.keras.layers.Layer):
  """Turns the NCF's liked logit into logits of P(rating > t) for each t.

  Binarizing ratings at 3 throws away most of what a rating says: a 0.5 and
  a 3.0 become the same label. A cumulative-link (ordinal logistic) model
  keeps it: P(rating > t) = sigmoid(logit + offset[t]) for every half-star
  threshold t, with one learned offset per threshold and the same logit. At
  t = 3 the offset is fixed at 0, so the logit stays exactly the liked logit
  that the ranking task, the metrics and serving use; the other thresholds
  only add training signal to it.

  Offsets start at the logits of the threshold shares of ml-32m's rating
  histogram relative to liked, close to where they end on any MovieLens set.
  """

  # Half-star thresholds: P(rating > t) for t in 0.5 .. 4.5.
  THRESHOLDS = features.RATING_LEVELS[:-1]

  def __init__(self, name: Optional[str] = "rating_thresholds",
               **kwargs) -> None:
    super().__init__(name=name, **kwargs)
    liked = self.THRESHOLDS.index(features.LIKED_THRESHOLD)
    counts = features.ML32M_RATING_COUNTS
    above = [sum(counts[i + 1:]) for i in range(len(self.THRESHOLDS))]
    logits = [math.log(a / (sum(counts) - a)) for a in above]
    initial = [x - logits[liked] for x in logits]
    self._liked = liked
    self.offsets = self.add_weight(
        name="offsets", shape=[len(initial) - 1],
        initializer=tf.keras.initializers.Constant(
            initial[:liked] + initial[liked + 1:]))

  def call(self, liked_logits: tf.Tensor) -> tf.Tensor:
    """Liked logits [B] -> logits [B, 9] of P(rating > t), t = 0.5 .. 4.5."""
    offsets = tf.concat([self.offsets[:self._liked], [0.0],
                         self.offsets[self._liked:]], axis=0)
    return liked_logits[:, tf.newaxis] + offsets

  @classmethod
  def labels(cls, ratings: tf.Tensor) -> tf.Tensor:
    """Ratings [B] -> float labels [B, 9]: rating > t."""
    return tf.cast(ratings[:, tf.newaxis] > tf.constant(cls.THRESHOLDS),
                   tf.float32)


def _ranking_metrics() -> List[tf.keras.metrics.Metric]:
  """Metrics of the "liked" prediction; all receive logits."""
  return [
      tf.keras.metrics.BinaryAccuracy(threshold=0.0, name="ranking_accuracy"),
      _ProbabilityMeanSquaredError(name="ranking_mse"),
      _ProbabilityMeanAbsoluteError(name="ranking_mae"),
      tf.keras.metrics.BinaryCrossentropy(
          from_logits=True, name="ranking_log_loss"),
      tf.keras.metrics.AUC(from_logits=True, name="ranking_auc"),
  ]


class RecommenderModel(tfrs.Model):
  """Retrieval towers and NCF ranker, trained jointly on rating batches.

  Batches are dicts with string `user_id` and `movie_id` [B], float32 `liked`
  [B], with sampling-bias correction float32 `movie_sampling_prob` [B] and
  with the rating task float32 `user_rating` [B]. The retrieval task treats
  each rating as a (user, movie) positive against the other movies of its
  chunk; the ranking task predicts `liked`; the rating task predicts every
  half-star threshold of the rating from the same NCF logit.

  A task with weight 0 is skipped and its layers are frozen, so its variables
  stay untouched. The tasks' losses are summed over a batch, as TFRS's
  tasks do, so that gradients scale with the batch; what training and
  evaluation report is per rating, averaged over the epoch: `loss`, the
  objective (the tasks' weighted losses plus the L2 penalties),
  `regularization_loss`, its penalty part, `retrieval_loss` and the
  `ranking_*` metrics.
  """

  def __init__(self,
               user_vocabulary: towers.Vocabulary,
               movie_vocabulary: towers.Vocabulary,
               config: ModelConfig = ModelConfig()) -> None:
    """Initializes the model.

    Args:
      user_vocabulary: Known user ids, most frequent first.
      movie_vocabulary: Known movie ids, most frequent first.
      config: Architecture and loss settings.
    """
    super().__init__()
    self._config = config

    self.query_tower = towers.IdEmbedding(
        user_vocabulary, config.retrieval_embedding_dim,
        l2=config.retrieval_l2, name="query_tower")
    self.candidate_tower = towers.IdEmbedding(
        movie_vocabulary, config.retrieval_embedding_dim,
        l2=config.retrieval_l2, name="candidate_tower")
    # The NCF tables share the towers' lookups: a batch's ids are mapped to
    # table rows once (`_mapped`), not once per table.
    self.ncf = ncf.NcfScorer(
        self.query_tower.lookup, self.candidate_tower.lookup,
        embedding_dim=config.ncf_embedding_dim,
        mlp_layers=config.ncf_mlp_layers,
        l2=config.ncf_l2 if config.ranking_weight else 0.0,
        bias=config.ncf_bias,
        name="ncf")

    if config.history_share:
      self.history_encoder = history.HistoryEncoder(
          movie_width=config.retrieval_embedding_dim + self.ncf.user_width,
          query_dim=config.retrieval_embedding_dim,
          ncf_user_width=self.ncf.user_width)
    # Hard-negative mining reorders the candidates: TFRS's own loss then.
    self._softmax_loss = (
        InBatchSoftmaxLoss(reduction=tf.keras.losses.Reduction.SUM)
        if config.num_hard_negatives is None else None)
    self.retrieval_task = tfrs.tasks.Retrieval(
        loss=self._softmax_loss,
        temperature=config.temperature,
        num_hard_negatives=config.num_hard_negatives,
        # Accidental hits are masked with `score_mask` (see retrieval_loss).
        remove_accidental_hits=False,
        name="retrieval")
    self.ranking_task = tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.SUM),
        metrics=_ranking_metrics() if config.ranking_weight else None,
        name="ranking")
    if config.rating_weight:
      self.rating_thresholds = RatingThresholds()
      # Keras's cross-entropy averages over the last axis (the thresholds),
      # so per example this loss is on the scale of the ranking loss.
      self.rating_task = tfrs.tasks.Ranking(
          loss=tf.keras.losses.BinaryCrossentropy(
              from_logits=True, reduction=tf.keras.losses.Reduction.SUM),
          name="rating")
    self.loss_tracker = tf.keras.metrics.Mean(name="loss")
    self.regularization_loss_tracker = tf.keras.metrics.Mean(
        name="regularization_loss")
    if config.history_share:
      self.history_loss_tracker = tf.keras.metrics.Mean(name="history_loss")
    if config.retrieval_weight:
      self.retrieval_loss_tracker = tf.keras.metrics.Mean(
          name="retrieval_loss")
    else:
      self.query_tower.trainable = False
      self.candidate_tower.trainable = False
    if not config.ranking_weight:
      self.ncf.trainable = False

  @property
  def config(self) -> ModelConfig:
    return self._config

  def call(self,
           inputs: Mapping[str, tf.Tensor],
           training: bool = False) -> Mapping[str, tf.Tensor]:
    """Runs all towers: both ids' embeddings [B, D] and NCF logits [B];
    with a history side, also the query of the inputs' histories (empty
    ones when the inputs have none), so that a call builds every layer."""
    outputs = {
        "query_embedding": self.query_tower(
            inputs[features.USER_ID], training=training),
        "candidate_embedding": self.candidate_tower(
            inputs[features.MOVIE_ID], training=training),
        "liked_logit": self.ncf(inputs, training=training),
    }
    if self._config.history_share:
      empty = tf.fill(tf.stack([tf.shape(inputs[features.USER_ID])[0], 1]),
                      features.HISTORY_PAD)
      outputs["history_query_embedding"] = self.history_query_embeddings(
          inputs.get(features.HISTORY_MOVIE_ID, empty),
          inputs.get(features.HISTORY_RATING, tf.zeros(tf.shape(empty))))
    return outputs

  def query_embeddings(self, user_ids: tf.Tensor) -> tf.Tensor:
    """Retrieval embeddings [B, D] of string user ids [B]."""
    return self.query_tower(user_ids)

  def candidate_embeddings(self, movie_ids: tf.Tensor) -> tf.Tensor:
    """Retrieval embeddings [N, D] of string movie ids [N]."""
    return self.candidate_tower(movie_ids)

  def rerank_logits(self, user_ids: tf.Tensor,
                    movie_ids: tf.Tensor) -> tf.Tensor:
    """NCF logits [B, C] of users [B] against their candidates [B, C]."""
    return self.ncf.score(user_ids, movie_ids)

  def rerank_scores(self, user_ids: tf.Tensor,
                    movie_ids: tf.Tensor) -> tf.Tensor:
    """The served order of users [B]' candidates [B, C]: higher is better.

    The NCF scorer predicts P(liked | rated), which says nothing about
    whether the user would watch the movie at all; ranking candidates by it
    alone pushes obscure, well-liked movies up. The retrieval logit, trained
    with a (bias-corrected) softmax over movies, is log P(watch) up to a
    per-user constant. Their sum, log P(watch) + log P(liked | watch), ranks
    by the chance that the user watches the movie and likes it.
    """
    users = self.user_rows(user_ids)
    return self.served_scores(self.query_tower(users),
                              self.ncf.user_embedding(users), movie_ids)

  def history_query_embeddings(self, history_movie_ids: tf.Tensor,
                               history_ratings: tf.Tensor) -> tf.Tensor:
    """Retrieval queries [B, D] of users given by their ratings [B, H]
    (movie ids, `features.HISTORY_PAD` where padded)."""
    return self.encode_history(history_movie_ids, history_ratings)["query"]

  def history_rerank_scores(self, history_movie_ids: tf.Tensor,
                            history_ratings: tf.Tensor,
                            movie_ids: tf.Tensor) -> tf.Tensor:
    """`rerank_scores` of users given by their ratings [B, H]."""
    rows = self.encode_history(history_movie_ids, history_ratings)
    return self.served_scores(rows["query"], rows["ncf"], movie_ids)

  def encode_history(self, movie_ids: tf.Tensor,
                     ratings: tf.Tensor) -> Mapping[str, tf.Tensor]:
    """Histories [B, H] (movie ids, `features.HISTORY_PAD` where padded;
    unknown ids are ignored) -> {"query": [B, D], "ncf": [B, W]}: the
    retrieval query and NCF user row of a user known by these ratings."""
    if not self._config.history_share:
      raise ValueError("This model has no history side: train it with "
                       "history_share > 0.")
    rows = self.candidate_tower.lookup(movie_ids)
    movies = tf.concat(
        [self.candidate_tower.embedding(rows),
         self.ncf.movie_embedding.embedding(rows)], axis=-1)
    return self.history_encoder(
        movies, (rows > 0) & (movie_ids != features.HISTORY_PAD), ratings)

  def served_scores(self, query: tf.Tensor, ncf_user: tf.Tensor,
                    movie_ids: tf.Tensor) -> tf.Tensor:
    """`rerank_scores` from users' queries [B, D] and NCF rows [B, W];
    `movie_ids` [B, C] are string ids or their `movie_rows`."""
    movie_ids = self.movie_rows(movie_ids)
    candidates = self.candidate_tower(movie_ids)
    retrieval = tf.einsum("bd,bcd->bc", query, candidates)
    if self._config.temperature:
      retrieval /= self._config.temperature
    return retrieval + tf.math.log_sigmoid(
        self.ncf.score_rows(ncf_user, movie_ids))

  def user_rows(self, user_ids: tf.Tensor) -> tf.Tensor:
    """Table rows of user ids (0: unknown), which every user table takes in
    place of the ids; rows pass through unchanged."""
    return self.query_tower.rows(user_ids)

  def movie_rows(self, movie_ids: tf.Tensor) -> tf.Tensor:
    """`user_rows` for movie ids."""
    return self.candidate_tower.rows(movie_ids)

  def _mapped(self, inputs: Mapping[str, tf.Tensor]) -> Mapping[str, tf.Tensor]:
    """A batch with its user and movie ids mapped to table rows, once for
    all the tables that read them."""
    mapped = dict(inputs)
    mapped[features.USER_ID] = self.user_rows(inputs[features.USER_ID])
    mapped[features.MOVIE_ID] = self.movie_rows(inputs[features.MOVIE_ID])
    return mapped

  def train_step(self, inputs):
    """One optimizer step on the batch-summed objective.

    With histories in the batch, the history encoder's variables step on
    `history_loss` alone, and every other variable on the objective alone.
    """
    inputs = self._mapped(inputs)
    histories = (self._config.history_share and
                 features.HISTORY_MOVIE_ID in inputs)
    with tf.GradientTape(persistent=histories) as tape:
      loss = self.compute_loss(inputs, training=True)
      regularization_loss = self._regularization_loss()
      total_loss = loss + regularization_loss
      if histories:
        history_loss = self.history_loss(inputs)
    variables = self.trainable_variables
    gradients = tape.gradient(total_loss, variables)
    if histories:
      encoder = self.history_encoder.trainable_variables
      encoder_gradients = dict(zip(
          [v.ref() for v in encoder], tape.gradient(history_loss, encoder)))
      gradients = [encoder_gradients.get(v.ref(), g)
                   for v, g in zip(variables, gradients)]
      num_history = tf.cast(
          tf.shape(inputs[features.HISTORY_MOVIE_ID])[0], tf.float32)
      self.history_loss_tracker.update_state(history_loss / num_history,
                                             sample_weight=num_history)
    self.optimizer.apply_gradients(zip(gradients, variables))
    return self._report(inputs, total_loss, regularization_loss)

  def test_step(self, inputs):
    """The training step's losses and metrics, without the update."""
    loss = self.compute_loss(inputs, training=False)
    regularization_loss = self._regularization_loss()
    logs = self._report(inputs, loss + regularization_loss,
                        regularization_loss)
    # Held-out batches carry no histories.
    return {name: value for name, value in logs.items()
            if name != "history_loss"}

  def _regularization_loss(self) -> tf.Tensor:
    return tf.add_n([tf.constant(0.0)] +
                    [tf.reduce_sum(loss) for loss in self.losses])

  def _report(self, inputs: Mapping[str, tf.Tensor], total_loss: tf.Tensor,
              regularization_loss: tf.Tensor) -> Mapping[str, tf.Tensor]:
    """Per-rating losses, weighted by batch size into the epoch's means."""
    num_ratings = tf.cast(tf.shape(inputs[features.USER_ID])[0], tf.float32)
    self.loss_tracker.update_state(total_loss / num_ratings,
                                   sample_weight=num_ratings)
    self.regularization_loss_tracker.update_state(
        regularization_loss / num_ratings, sample_weight=num_ratings)
    return {metric.name: metric.result() for metric in self.metrics}

  def compute_loss(self,
                   inputs: Mapping[str, tf.Tensor],
                   training: bool = False) -> tf.Tensor:
    """Weighted sum of the enabled tasks' batch-summed losses."""
    inputs = self._mapped(inputs)
    loss = tf.constant(0.0)
    if self._config.retrieval_weight:
      retrieval_loss = self.retrieval_loss(inputs, training=training)
      num_examples = tf.cast(tf.shape(inputs[features.USER_ID])[0], tf.float32)
      self.retrieval_loss_tracker.update_state(retrieval_loss / num_examples,
                                               sample_weight=num_examples)
      loss += self._config.retrieval_weight * retrieval_loss
    if self._config.ranking_weight:
      logits = self.ncf(inputs, training=training)
      ranking_loss = self.ranking_task(
          labels=tf.expand_dims(inputs[features.LIKED], -1),
          predictions=tf.expand_dims(logits, -1),
          training=training)
      loss += self._config.ranking_weight * ranking_loss
      if self._config.rating_weight:
        rating_loss = self.rating_task(
            labels=RatingThresholds.labels(inputs[features.RATING]),
            predictions=self.rating_thresholds(logits),
            training=training)
        loss += self._config.rating_weight * rating_loss
    return loss

  def history_loss(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
    """The history encoder's loss on the batch's history examples.

    A batch's histories [N, H] belong to its first N examples; here those
    are scored as users known only by their ratings: the retrieval query and
    the NCF user row come from the history encoder, not the user id, against
    the same movies and labels (the tasks' weighted losses), and are pulled
    towards the rows the user id has learned (squared distance).
    `train_step` applies this loss to the encoder's own variables only, so
    users known by id train exactly as without it. 0 when the batch has no
    histories.
    """
    if (not self._config.history_share or
        features.HISTORY_MOVIE_ID not in inputs):
      return tf.constant(0.0)
    movie_ids = inputs[features.HISTORY_MOVIE_ID]
    encoded = self.encode_history(movie_ids, inputs[features.HISTORY_RATING])
    num_history = movie_ids.shape[0]
    if num_history is None:
      num_history = tf.shape(movie_ids)[0]
    examples = {name: inputs[name][:num_history]
                for name in (features.MOVIE_ID, features.LIKED,
                             features.RATING, features.MOVIE_SAMPLING_PROB)
                if name in inputs}
    # Distillation: the rows the user's id has learned from all their
    # ratings are what a history should stand in for. The tasks' losses
    # alone teach the encoder little beyond popularity.
    users = inputs[features.USER_ID][:num_history]
    loss = (tf.reduce_sum(tf.square(
        encoded["query"] - tf.stop_gradient(self.query_tower(users)))) +
            tf.reduce_sum(tf.square(
                encoded["ncf"] -
                tf.stop_gradient(self.ncf.user_embedding(users)))))
    # training=False: no L2 terms, the id tables take no step here.
    if self._config.retrieval_weight:
      loss += self._config.retrieval_weight * self.retrieval_loss(
          examples, queries=encoded["query"])
    if self._config.ranking_weight:
      logits = self.ncf.score_rows(encoded["ncf"], examples[features.MOVIE_ID])
      loss += self._config.ranking_weight * self.ranking_task(
          labels=tf.expand_dims(examples[features.LIKED], -1),
          predictions=tf.expand_dims(logits, -1), compute_metrics=False)
      if self._config.rating_weight:
        loss += self._config.rating_weight * self.rating_task(
            labels=RatingThresholds.labels(examples[features.RATING]),
            predictions=self.rating_thresholds(logits),
            compute_metrics=False)
    return loss

  def retrieval_loss(self,
                     inputs: Mapping[str, tf.Tensor],
                     training: bool = False,
                     queries: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Summed in-batch softmax loss, the softmax running within each chunk.

    Chunks are consecutive `retrieval_batch_size` examples (the last one may
    be smaller); with one chunk this is exactly `tfrs.tasks.Retrieval` over
    the batch.

    Args:
      inputs: A batch of features.
      training: Whether this is a training step.
      queries: The examples' queries [B, D], when not their users' id
        embeddings.

    Returns:
      Scalar: the loss summed over the examples of the batch.
    """
    movie_ids = self.movie_rows(inputs[features.MOVIE_ID])
    if queries is None:
      queries = self.query_tower(inputs[features.USER_ID], training=training)
    candidates = self.candidate_tower(movie_ids, training=training)
    columns = {"query_embeddings": queries, "candidate_embeddings": candidates}
    if self._config.sampling_bias_correction:
      if features.MOVIE_SAMPLING_PROB not in inputs:
        raise KeyError("Sampling-bias correction needs a "
                       f"'{features.MOVIE_SAMPLING_PROB}' column.")
      columns["candidate_sampling_probability"] = inputs[
          features.MOVIE_SAMPLING_PROB]
    if self._config.remove_accidental_hits:
      # The movies' table rows name the candidates.
      columns["candidate_ids"] = movie_ids

    def chunk_loss(chunk: Mapping[str, tf.Tensor]) -> tf.Tensor:
      chunk = dict(chunk)
      ids = chunk.pop("candidate_ids", None)
      if ids is not None and self._softmax_loss is not None:
        # Accidental hits left out by the loss itself, without a mask.
        with self._softmax_loss.repeated_positives(ids):
          return self.retrieval_task(
              **chunk, compute_metrics=False, compute_batch_metrics=False)
      if ids is not None:
        # TFRS's accidental-hit removal builds its mask from float one-hot
        # labels in five passes over the chunk's logits; a boolean mask of
        # "different movie, or the positive itself" does the same in two.
        size = tf.shape(ids)[0]
        chunk["score_mask"] = tf.logical_or(
            tf.not_equal(ids[:, tf.newaxis], ids[tf.newaxis, :]),
            tf.eye(size, dtype=tf.bool))
      return self.retrieval_task(
          **chunk, compute_metrics=False, compute_batch_metrics=False)

    chunk_size = self._config.retrieval_batch_size
    if chunk_size is None:
      return chunk_loss(columns)
    static_batch_size = queries.shape[0]
    if static_batch_size is not None:
      # Splitting a static batch backpropagates with one concat; slicing in a
      # loop writes a dense batch-sized gradient per chunk.
      sizes = [chunk_size] * (static_batch_size // chunk_size)
      if static_batch_size % chunk_size:
        sizes.append(static_batch_size % chunk_size)
      split = {name: tf.split(x, sizes) for name, x in columns.items()}
      # One function, traced once per chunk shape and called per chunk: the
      # step then traces (and differentiates) one chunk's ops, not 32
      # copies; Grappler inlines the calls, so the step runs the same ops.
      one_chunk = tf.function(chunk_loss) if len(sizes) > 1 else chunk_loss
      return tf.add_n([
          one_chunk({name: parts[i] for name, parts in split.items()})
          for i in range(len(sizes))])
    batch_size = tf.shape(queries)[0]
    num_chunks = (batch_size + chunk_size - 1) // chunk_size

    def body(i, total):
      start = i * chunk_size
      end = tf.minimum(start + chunk_size, batch_size)
      chunk = {name: column[start:end] for name, column in columns.items()}
      return i + 1, total + chunk_loss(chunk)

    _, total = tf.while_loop(
        lambda i, _: i < num_chunks, body, (tf.constant(0), tf.constant(0.0)))
    return total
