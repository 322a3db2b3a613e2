"""A tiny trained-shape model and its export, shared by the export and serving tests.

3,000 movies (enough for a meaningful ScaNN recall@100) and 50 users. The
retrieval embeddings of the movies are set to a clustered matrix, the shape
trained embeddings have (random isotropic vectors, the worst case for a
partitioned index, are measured in the serving benchmark instead).
"""

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import tensorflow as tf

from ncf_tfrs import features
from ncf_tfrs import model as model_lib
from ncf_tfrs import data as data_lib

NUM_USERS = 50
NUM_MOVIES = 3000
DIM = 16
MODEL_NAME = "tiny"
# With a history side, so the exports carry the *_history signatures too.
CONFIG = model_lib.ModelConfig(
    retrieval_embedding_dim=DIM, ncf_embedding_dim=4, ncf_mlp_layers=(8, 4),
    history_share=0.25)


def vocabulary() -> data_lib.Vocabulary:
  users = np.array([f"u{i}" for i in range(NUM_USERS)], dtype=bytes)
  movies = np.array([f"m{i}" for i in range(NUM_MOVIES)], dtype=bytes)
  # Most rated first, as Vocabulary.from_ratings orders them.
  return data_lib.Vocabulary(users, movies,
                             np.arange(NUM_MOVIES, 0, -1, dtype=np.int64) * 3)


def movies() -> data_lib.Movies:
  ids = np.array([f"m{i}" for i in range(NUM_MOVIES)], dtype=object)
  return data_lib.Movies(
      movie_ids=ids,
      titles=np.array([f"Movie {i} (2000)" for i in range(NUM_MOVIES)],
                      dtype=object),
      genres=[["Drama", "Comedy"][i % 2:] for i in range(NUM_MOVIES)])


def model(vocab: data_lib.Vocabulary, seed: int = 0
          ) -> model_lib.RecommenderModel:
  tf.keras.utils.set_random_seed(seed)
  built = model_lib.RecommenderModel(vocab.user_ids, vocab.movie_ids, CONFIG)
  built({features.USER_ID: tf.constant(vocab.user_ids[:2]),
         features.MOVIE_ID: tf.constant(vocab.movie_ids[:2])})
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(30, DIM))
  table = centers[rng.integers(0, 30, NUM_MOVIES + 1)] + 0.3 * rng.normal(
      size=(NUM_MOVIES + 1, DIM))
  built.candidate_tower.embedding.set_weights([table.astype(np.float32)])
  users = centers[rng.integers(0, 30, NUM_USERS + 1)] + 0.3 * rng.normal(
      size=(NUM_USERS + 1, DIM))
  built.query_tower.embedding.set_weights([users.astype(np.float32)])
  return built


# Users with a training history in the exports: u0 rated every movie but
# these three; u7 rated its 20 best retrieval candidates. Others rated none.
UNRATED_BY_U0 = ("m100", "m2000", "m2999")


def history(vocab: data_lib.Vocabulary,
            built: model_lib.RecommenderModel) -> data_lib.RatedHistory:
  scores = (built.query_embeddings(tf.constant(vocab.user_ids[7:8])).numpy()
            @ built.candidate_embeddings(tf.constant(vocab.movie_ids)).numpy().T)
  unrated = [int(m[1:]) for m in UNRATED_BY_U0]
  rows = {0: np.setdiff1d(np.arange(NUM_MOVIES), unrated),
          7: np.sort(np.argsort(-scores[0])[:20])}
  lengths = [len(rows.get(u, [])) for u in range(NUM_USERS)]
  return data_lib.RatedHistory(
      user_ids=np.asarray(vocab.user_ids, dtype=bytes),
      row_splits=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      movies=np.concatenate([rows.get(u, np.zeros(0, int))
                             for u in range(NUM_USERS)]).astype(np.int32))


def rated(hist: data_lib.RatedHistory, user: int) -> set[str]:
  return {f"m{m}" for m in hist.row(user)}
