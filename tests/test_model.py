"""Behaviour of the retrieval + NCF model on tiny in-memory data."""

import dataclasses

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ncf_tfrs import features
from ncf_tfrs import model as model_lib

NUM_USERS = 40
NUM_MOVIES = 30
USERS = [f"u{i}" for i in range(NUM_USERS)]
MOVIES = [f"m{i}" for i in range(NUM_MOVIES)]
SMALL = model_lib.ModelConfig(
    retrieval_embedding_dim=8, ncf_embedding_dim=4, ncf_mlp_layers=(8, 4),
    retrieval_batch_size=16)


@pytest.fixture(autouse=True)
def _seed():
  tf.keras.utils.set_random_seed(0)


def _ratings(num, seed=0, planted=False):
  """Random (user, movie, liked) rows; planted: liked iff same id parity."""
  rng = np.random.default_rng(seed)
  users = rng.integers(0, NUM_USERS, num)
  movies = rng.integers(0, NUM_MOVIES, num)
  if planted:
    liked = (users % 2 == movies % 2).astype(np.float32)
  else:
    liked = rng.integers(0, 2, num).astype(np.float32)
  return {
      features.USER_ID: np.array(USERS)[users],
      features.MOVIE_ID: np.array(MOVIES)[movies],
      features.LIKED: liked,
      features.RATING: np.where(liked > 0, 5.0, 1.0).astype(np.float32),
      features.MOVIE_SAMPLING_PROB: np.full(num, 1 / NUM_MOVIES, np.float32),
  }


def _tensors(rows):
  return {name: tf.constant(column) for name, column in rows.items()}


def _dataset(rows, batch_size):
  return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)


def _compiled(config=SMALL):
  model = model_lib.RecommenderModel(USERS, MOVIES, config)
  model.compile(optimizer=model_lib.make_optimizer(model))
  return model


def test_loss_goes_down():
  rows = _ratings(256)
  model = _compiled()
  whole = _dataset(rows, 256)
  before = model.evaluate(whole, return_dict=True, verbose=0)["loss"]
  model.fit(_dataset(rows, 64), epochs=5, verbose=0)
  after = model.evaluate(whole, return_dict=True, verbose=0)["loss"]
  assert after < 0.95 * before


def test_unknown_ids_use_the_oov_row():
  model = _compiled()
  outputs = model({features.USER_ID: tf.constant(["nobody", "ghost", "u1"]),
                   features.MOVIE_ID: tf.constant(["none", "void", "m1"])})
  np.testing.assert_array_equal(
      model.query_tower.lookup(tf.constant(["nobody", "u0", "u1"])), [0, 1, 2])
  for name in ("query_embedding", "candidate_embedding", "liked_logit"):
    output = outputs[name].numpy()
    np.testing.assert_array_equal(output[0], output[1])
    assert not np.array_equal(output[0], output[2])
  assert outputs["liked_logit"].shape == [3]


def _weights_changed(config):
  """Trains one epoch; says which parts' weights moved."""
  model = _compiled(config)
  rows = _ratings(128)
  model(_tensors(rows))
  parts = {
      "retrieval": model.query_tower.weights + model.candidate_tower.weights,
      "ncf": model.ncf.weights,
  }
  before = {part: [w.numpy() for w in ws] for part, ws in parts.items()}
  model.fit(_dataset(rows, 64), epochs=1, verbose=0)
  return {
      part: any(not np.array_equal(old, new.numpy())
                for old, new in zip(before[part], parts[part]))
      for part in parts
  }


def test_zero_ranking_weight_trains_only_retrieval():
  config = dataclasses.replace(SMALL, ranking_weight=0.0)
  assert _weights_changed(config) == {"retrieval": True, "ncf": False}


def test_zero_retrieval_weight_trains_only_ncf():
  config = dataclasses.replace(SMALL, retrieval_weight=0.0)
  assert _weights_changed(config) == {"retrieval": False, "ncf": True}


def test_rerank_path_matches_pair_scores():
  model = _compiled()
  rng = np.random.default_rng(1)
  users = np.array(USERS)[rng.integers(0, NUM_USERS, 5)]
  candidates = np.array(MOVIES)[rng.integers(0, NUM_MOVIES, (5, 7))]
  grid = model.rerank_logits(tf.constant(users), tf.constant(candidates))
  assert grid.shape == [5, 7]
  pairs = model.ncf({features.USER_ID: tf.constant(np.repeat(users, 7)),
                     features.MOVIE_ID: tf.constant(candidates.reshape(-1))})
  np.testing.assert_allclose(
      grid.numpy().reshape(-1), pairs.numpy(), rtol=1e-5, atol=1e-6)


def test_ncf_bias_adds_a_per_user_and_per_movie_offset_to_the_logit():
  model = _compiled(dataclasses.replace(SMALL, ncf_bias=True))
  users = tf.constant(np.repeat(USERS[:3], NUM_MOVIES))
  movies = tf.constant(np.tile(MOVIES, 3))
  before = model.ncf.score(users, movies).numpy().reshape(3, NUM_MOVIES)
  table = model.ncf.user_embedding.embedding.embeddings
  row = int(model.ncf.user_embedding.lookup(tf.constant(USERS[1])))
  table.assign(tf.tensor_scatter_nd_add(
      table, [[row, table.shape[1] - 1]], [1.5]))
  table = model.ncf.movie_embedding.embedding.embeddings
  row = int(model.ncf.movie_embedding.lookup(tf.constant(MOVIES[4])))
  table.assign(tf.tensor_scatter_nd_add(
      table, [[row, table.shape[1] - 1]], [-0.5]))
  shift = np.zeros((3, NUM_MOVIES), np.float32)
  shift[1] += 1.5
  shift[:, 4] -= 0.5
  after = model.ncf.score(users, movies).numpy().reshape(3, NUM_MOVIES)
  np.testing.assert_allclose(after - before, shift, atol=1e-5)


def test_served_rerank_score_is_watch_plus_like_log_probability():
  model = _compiled()
  rng = np.random.default_rng(2)
  users = np.array(USERS)[rng.integers(0, NUM_USERS, 4)]
  candidates = np.array(MOVIES)[rng.integers(0, NUM_MOVIES, (4, 6))]
  served = model.rerank_scores(tf.constant(users), tf.constant(candidates))
  query = model.query_embeddings(tf.constant(users)).numpy()
  for b in range(4):
    movies = model.candidate_embeddings(tf.constant(candidates[b])).numpy()
    liked = model.rerank_logits(tf.constant(users[b:b + 1]),
                                tf.constant(candidates[b:b + 1])).numpy()[0]
    np.testing.assert_allclose(
        served.numpy()[b], movies @ query[b] - np.log1p(np.exp(-liked)),
        rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [48, None])
def test_one_chunk_loss_equals_retrieval_task(chunk):
  rows = _tensors(_ratings(48))
  model = model_lib.RecommenderModel(
      USERS, MOVIES, dataclasses.replace(SMALL, retrieval_batch_size=chunk))
  # Repeated movies, so that accidental hits occur.
  rows[features.MOVIE_ID] = tf.constant(np.array(MOVIES)[np.arange(48) % 7])
  stock = tfrs.tasks.Retrieval(remove_accidental_hits=True)
  model(rows)  # Builds the tables.
  tables = [model.query_tower.embedding.embeddings,
            model.candidate_tower.embedding.embeddings]
  with tf.GradientTape(persistent=True) as tape:
    expected = stock(
        model.query_embeddings(rows[features.USER_ID]),
        model.candidate_embeddings(rows[features.MOVIE_ID]),
        candidate_sampling_probability=rows[features.MOVIE_SAMPLING_PROB],
        candidate_ids=rows[features.MOVIE_ID])
    actual = model.retrieval_loss(rows)
  np.testing.assert_allclose(actual, expected, rtol=1e-6)
  for table in tables:
    np.testing.assert_allclose(
        tf.convert_to_tensor(tape.gradient(actual, table)),
        tf.convert_to_tensor(tape.gradient(expected, table)), atol=1e-6)


def test_in_batch_softmax_loss_matches_dense_label_cross_entropy():
  scores = tf.constant(np.random.default_rng(0).normal(size=(6, 6)) * 3,
                       tf.float32)
  weights = tf.constant([1.0, 0.5, 2.0, 0.0, 1.0, 1.0])
  sparse = model_lib.InBatchSoftmaxLoss(
      reduction=tf.keras.losses.Reduction.SUM)
  dense = tf.keras.losses.CategoricalCrossentropy(
      from_logits=True, reduction=tf.keras.losses.Reduction.SUM)
  results = []
  for loss in (sparse, dense):
    with tf.GradientTape() as tape:
      tape.watch(scores)
      value = loss(tf.eye(6), scores, sample_weight=weights)
    results.append((value, tape.gradient(value, scores)))
  np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
  np.testing.assert_allclose(results[0][1], results[1][1], atol=1e-6)


def test_chunk_losses_add_up_for_static_and_dynamic_batches():
  rows = _tensors(_ratings(40))
  model = model_lib.RecommenderModel(USERS, MOVIES, SMALL)  # Chunks of 16.
  expected = sum(
      model.retrieval_loss({k: v[start:start + 16] for k, v in rows.items()})
      for start in (0, 16, 32))
  dynamic = tf.function(model.retrieval_loss, input_signature=[{
      k: tf.TensorSpec([None], v.dtype) for k, v in rows.items()}])
  np.testing.assert_allclose(model.retrieval_loss(rows), expected, rtol=1e-6)
  np.testing.assert_allclose(dynamic(rows), expected, rtol=1e-6)
  # The static batch's chunks share one traced function; the towers'
  # gradients come through its calls as through separate chunks.
  towers = (model.query_tower.trainable_variables +
            model.candidate_tower.trainable_variables)
  gradients = []
  for loss in (lambda: model.retrieval_loss(rows),
               lambda: sum(model.retrieval_loss(
                   {k: v[start:start + 16] for k, v in rows.items()})
                           for start in (0, 16, 32))):
    with tf.GradientTape() as tape:
      value = loss()
    gradients.append([tf.convert_to_tensor(g)
                      for g in tape.gradient(value, towers)])
  for chunked, separate in zip(*gradients):
    assert np.abs(separate.numpy()).max() > 0
    np.testing.assert_allclose(chunked, separate, rtol=1e-5, atol=1e-7)


def test_fit_and_evaluate_report_named_metrics():
  model = _compiled()
  rows = _ratings(128)
  history = model.fit(_dataset(rows, 64), epochs=1, verbose=0).history
  results = model.evaluate(_dataset(rows, 64), return_dict=True, verbose=0)
  for name in ("ranking_auc", "ranking_accuracy", "ranking_mse", "ranking_mae",
               "ranking_log_loss", "retrieval_loss", "loss",
               "regularization_loss"):
    assert name in history
    assert name in results
  # The reported loss is the objective per rating, on the scale of its parts
  # (the tasks sum over a batch; the report does not).
  np.testing.assert_allclose(
      results["loss"],
      SMALL.retrieval_weight * results["retrieval_loss"] +
      SMALL.ranking_weight * results["ranking_log_loss"], rtol=1e-4)
  # Metrics that need probabilities get sigmoid(logit).
  probs = tf.sigmoid(model.ncf(_tensors(rows))).numpy()
  liked = rows[features.LIKED]
  np.testing.assert_allclose(
      [results["ranking_mse"], results["ranking_mae"],
       results["ranking_accuracy"], results["ranking_log_loss"]],
      [np.mean((probs - liked)**2), np.mean(np.abs(probs - liked)),
       np.mean((probs > 0.5) == liked),
       -np.mean(liked * np.log(probs) + (1 - liked) * np.log(1 - probs))],
      rtol=1e-4)


def test_l2_penalties_enter_the_training_loss():
  rows = _ratings(64)
  for config, penalized in (
      (SMALL, False),
      (dataclasses.replace(SMALL, retrieval_l2=0.01), True),
      (dataclasses.replace(SMALL, ncf_l2=0.01), True),
      (dataclasses.replace(SMALL, ncf_l2=0.01, ranking_weight=0.0), False)):
    logs = _compiled(config).train_step(_tensors(rows))
    assert (logs["regularization_loss"] > 0) == penalized, config


def test_l2_penalty_is_l2_times_the_squares_of_the_rows_a_batch_looks_up():
  rows = _ratings(64)
  model = _compiled(dataclasses.replace(SMALL, retrieval_l2=0.01))
  model(_tensors(rows))
  queries = model.query_embeddings(tf.constant(rows[features.USER_ID]))
  candidates = model.candidate_embeddings(tf.constant(rows[features.MOVIE_ID]))
  # Reported per rating, as the losses are.
  expected = 0.01 * (np.sum(np.square(queries)) +
                     np.sum(np.square(candidates))) / 64
  logs = model.train_step(_tensors(rows))
  assert float(logs["regularization_loss"]) == pytest.approx(expected,
                                                             rel=1e-5)


def test_learns_planted_groups():
  model = _compiled()
  model.fit(_dataset(_ratings(2000, planted=True), 100), epochs=4, verbose=0)
  held_out = _dataset(_ratings(500, seed=1, planted=True), 500)
  results = model.evaluate(held_out, return_dict=True, verbose=0)
  assert results["ranking_auc"] > 0.8


def test_optimizer_updates_embedding_tables_with_adagrad():
  model = _compiled()
  model.fit(_dataset(_ratings(64), 64), epochs=1, verbose=0)
  adagrad, adam = model.optimizer.optimizers

  def has_slots(optimizer, variable):
    try:
      optimizer.get_slot(variable, optimizer.get_slot_names()[0])
      return True
    except KeyError:
      return False

  tables = {tower.embedding.embeddings.ref() for tower in (
      model.query_tower, model.candidate_tower, model.ncf.user_embedding,
      model.ncf.movie_embedding)}
  for variable in model.trainable_variables:
    is_table = variable.ref() in tables
    assert has_slots(adagrad, variable) == is_table, variable.name
    assert has_slots(adam, variable) != is_table, variable.name


def test_slots_created_up_front_train_the_same_with_one_trace():
  rows = _ratings(128)
  batch = _tensors({name: column[:64] for name, column in rows.items()})
  trained = {}
  for up_front in (False, True):
    tf.keras.utils.set_random_seed(0)
    model = _compiled()
    model(batch)
    if up_front:
      model_lib.create_slots(model)
      created = len(model.optimizer.weights)
    model.fit(_dataset(rows, 64), epochs=2, verbose=0)
    trained[up_front] = model
  lazy, eager = trained[False], trained[True]
  # Every variable apply_gradients needs, and no other, was created.
  assert created == len(lazy.optimizer.weights) == len(eager.optimizer.weights)
  for a, b in zip(lazy.weights + lazy.optimizer.weights,
                  eager.weights + eager.optimizer.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
  # A step that creates variables is traced again without them.
  assert lazy.train_tf_function.experimental_get_tracing_count() == 2
  assert eager.train_tf_function.experimental_get_tracing_count() == 1


def test_needs_a_positive_task_weight():
  with pytest.raises(ValueError):
    model_lib.RecommenderModel(USERS, MOVIES, model_lib.ModelConfig(
        retrieval_weight=0.0, ranking_weight=0.0))


def test_rating_task_needs_the_ranking_task():
  with pytest.raises(ValueError, match="ranking_weight"):
    model_lib.RecommenderModel(USERS, MOVIES, dataclasses.replace(
        SMALL, ranking_weight=0.0, rating_weight=1.0))


def test_rating_task_is_an_ordinal_model_of_the_liked_logit():
  config = dataclasses.replace(SMALL, retrieval_weight=0.0, ranking_weight=1.0,
                               rating_weight=1.0)
  model = _compiled(config)
  rows = _ratings(32)
  rows[features.RATING] = np.resize(np.arange(1, 11, dtype=np.float32) / 2, 32)
  inputs = _tensors(rows)
  logits = model.ncf(inputs).numpy()
  threshold_logits = model.rating_thresholds(tf.constant(logits)).numpy()
  thresholds = np.arange(1, 10) / 2
  # P(rating > 3) is the liked probability itself, and the threshold
  # probabilities fall as the threshold rises.
  np.testing.assert_allclose(threshold_logits[:, thresholds == 3.0][:, 0],
                             logits, rtol=1e-6)
  assert np.all(np.diff(threshold_logits, axis=1) < 0)
  # The rating loss is the cross-entropy of every threshold, averaged over
  # thresholds and summed over ratings.
  above = (rows[features.RATING][:, None] > thresholds).astype(np.float32)
  prob = 1 / (1 + np.exp(-threshold_logits))
  expected_rating = -np.sum(np.mean(
      above * np.log(prob) + (1 - above) * np.log(1 - prob), axis=1))
  liked = rows[features.LIKED]
  p = 1 / (1 + np.exp(-logits))
  expected_ranking = -np.sum(liked * np.log(p) + (1 - liked) * np.log(1 - p))
  np.testing.assert_allclose(model.compute_loss(inputs).numpy(),
                             expected_ranking + expected_rating, rtol=1e-4)


def test_rating_task_teaches_the_liked_logit_what_liked_labels_cannot():
  # No rating is liked, so the liked labels say nothing; the ratings (2.5
  # for pairs of equal parity, 0.5 otherwise) say which pairs come closer.
  def rows(num, seed):
    data = _ratings(num, seed=seed, planted=True)
    data[features.RATING] = np.where(data[features.LIKED] > 0, 2.5,
                                     0.5).astype(np.float32)
    closer = data[features.LIKED].copy()
    data[features.LIKED] = np.zeros(num, np.float32)
    return data, closer

  train, _ = rows(2000, seed=0)
  held_out, closer = rows(500, seed=1)
  aucs = {}
  for rating_weight in (0.0, 1.0):
    model = _compiled(dataclasses.replace(
        SMALL, retrieval_weight=0.0, rating_weight=rating_weight))
    model.fit(_dataset(train, 100), epochs=12, verbose=0)
    logits = model.ncf(_tensors(held_out)).numpy()
    # AUC from the logits: the liked probabilities are all close to 0.
    aucs[rating_weight] = np.mean(
        logits[closer > 0][:, None] > logits[closer == 0][None, :])
  assert aucs[1.0] > 0.9
  assert aucs[0.0] < 0.7


HISTORY = dataclasses.replace(SMALL, history_share=0.25, history_length=5)


def _with_histories(rows, batch_size, length=5):
  """Batches whose first quarter carries each user's other movies."""
  def batches():
    for start in range(0, len(rows[features.USER_ID]), batch_size):
      batch = {k: v[start:start + batch_size] for k, v in rows.items()}
      n = batch_size // 4
      ids = np.full((n, length), features.HISTORY_PAD, dtype=object)
      ratings = np.zeros((n, length), np.float32)
      for i in range(n):
        mine = np.flatnonzero((rows[features.USER_ID] ==
                               batch[features.USER_ID][i]) &
                              (rows[features.MOVIE_ID] !=
                               batch[features.MOVIE_ID][i]))[:length]
        ids[i, :len(mine)] = rows[features.MOVIE_ID][mine]
        ratings[i, :len(mine)] = rows[features.RATING][mine]
      batch[features.HISTORY_MOVIE_ID] = ids.astype(str)
      batch[features.HISTORY_RATING] = ratings
      yield {k: tf.constant(v) for k, v in batch.items()}
  return list(batches())


def test_history_side_leaves_users_known_by_id_as_without_it():
  rows = _ratings(256, planted=True)
  batches = _with_histories(rows, 64)
  plain, with_history = _compiled(), _compiled(HISTORY)
  def shared_weights():
    return [v.numpy() for v in with_history.trainable_weights
            if "history" not in v.name]
  plain(batches[0])
  with_history(batches[0])
  for v, w in zip(plain.trainable_weights, shared_weights()):
    v.assign(w)  # The same start.
  def step(model, batch):
    return model.fit(tf.data.Dataset.from_tensors(batch), verbose=0).history
  for batch in batches:
    step(plain, {k: v for k, v in batch.items()
                 if not k.startswith("history_")})
    logs = step(with_history, batch)
  assert logs["history_loss"][0] > 0
  assert len(plain.trainable_weights) == len(shared_weights())
  for a, b in zip([v.numpy() for v in plain.trainable_weights],
                  shared_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  before = [w.copy() for w in with_history.history_encoder.get_weights()]
  step(with_history, batches[0])
  assert any((a != b).any() for a, b in zip(
      before, with_history.history_encoder.get_weights()))


def test_history_query_ignores_pads_and_unknown_movies():
  model = _compiled(HISTORY)
  model(_tensors(_ratings(8)))
  short = model.history_query_embeddings(
      tf.constant([["m1", "m2"]]), tf.constant([[5.0, 1.0]]))
  padded = model.history_query_embeddings(
      tf.constant([["m1", "", "unknown", "m2"]]),
      tf.constant([[5.0, 0.0, 4.0, 1.0]]))
  np.testing.assert_allclose(short, padded, rtol=1e-6)
  flipped = model.history_query_embeddings(
      tf.constant([["m1", "m2"]]), tf.constant([[1.0, 5.0]]))
  assert not np.allclose(short, flipped)
  with pytest.raises(ValueError, match="history_share"):
    _compiled().history_query_embeddings(tf.constant([["m1"]]),
                                         tf.constant([[5.0]]))


def test_history_served_order_matches_a_user_whose_rows_equal_it():
  model = _compiled(HISTORY)
  model(_tensors(_ratings(8)))
  ids, ratings = tf.constant([["m1", "m3"]]), tf.constant([[4.0, 2.0]])
  rows = model.encode_history(ids, ratings)
  model.query_tower.embedding.embeddings[1].assign(rows["query"][0])
  model.ncf.user_embedding.embedding.embeddings[1].assign(rows["ncf"][0])
  candidates = tf.constant([["m0", "m5", "m7"]])
  np.testing.assert_allclose(
      model.history_rerank_scores(ids, ratings, candidates),
      model.rerank_scores(tf.constant([USERS[0]]), candidates), rtol=1e-5)
