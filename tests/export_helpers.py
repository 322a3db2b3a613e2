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
CONFIG = model_lib.ModelConfig(
    retrieval_embedding_dim=DIM, ncf_embedding_dim=4, ncf_mlp_layers=(8, 4))


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
