"""From the TFDS dataset to batched training tensors.

The TFDS builder stores one example per user. Training wants one example per
rating, shuffled, in large batches, so this module:

1. `load` reads the prepared dataset once into flat, columnar numpy arrays
   (`Ratings`), with users and movies as int32 codes into their id tables. This
   is the only pass over TFDS; every epoch after it reads memory.
2. `split` makes a deterministic train/test split: the notebook's random 80/20
   over ratings, or per-user temporal (each user's latest ratings held out).
3. `Vocabulary.from_ratings` builds the model's vocabularies from the training
   split (most frequent first, as StringLookup expects).
4. `make_dataset` batches a split as a tf.data pipeline whose elements are the
   dicts the model takes: raw string ids, the liked label, the rating, and the
   movie's sampling probability for the retrieval task's bias correction.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ncf_tfrs import features
from ncf_tfrs.datasets import movielens_users  # Also registers the builder.

SplitMethod = Literal["random", "temporal"]
SPLIT_METHODS = ("random", "temporal")
DATASET_NAME = "movielens_users"
# The ratings configs ('32m', 'synthetic-small', ...); each has a -movies twin.
DATASET_CONFIGS = tuple(c.name for c in movielens_users.Builder.BUILDER_CONFIGS
                        if c.table == "ratings")


class DatasetNotFoundError(FileNotFoundError):
  """The dataset is not prepared and may not be downloaded in this run."""


@dataclasses.dataclass(frozen=True)
class Ratings:
  """Ratings as flat columns; ids are int32 codes into `user_ids`/`movie_ids`.

  A split shares the id tables of the ratings it came from, so codes mean the
  same thing in train and test.
  """

  user_ids: np.ndarray  # (num_users,) bytes
  movie_ids: np.ndarray  # (num_movies,) bytes
  user: np.ndarray  # (n,) int32
  movie: np.ndarray  # (n,) int32
  rating: np.ndarray  # (n,) float32
  timestamp: np.ndarray  # (n,) int64
  oracle: np.ndarray | None = None  # (n,) float32; synthetic data only

  def __len__(self) -> int:
    return len(self.user)

  @property
  def liked(self) -> np.ndarray:
    return (self.rating > features.LIKED_THRESHOLD).astype(np.float32)

  def take(self, rows: np.ndarray) -> Ratings:
    """The ratings at `rows` (indices or a boolean mask), same id tables."""
    return dataclasses.replace(
        self,
        user=self.user[rows],
        movie=self.movie[rows],
        rating=self.rating[rows],
        timestamp=self.timestamp[rows],
        oracle=None if self.oracle is None else self.oracle[rows])


@dataclasses.dataclass(frozen=True)
class Movies:
  """Movie metadata, for display and features."""

  movie_ids: np.ndarray  # (num_movies,) bytes
  titles: np.ndarray  # (num_movies,) str
  genres: list[list[str]]


def _builder(config: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  return tfds.builder(f"{DATASET_NAME}/{config}", data_dir=data_dir)


def prepare(config: str,
            data_dir: str | None = None,
            manual_dir: str | None = None,
            download: bool = True) -> None:
  """Prepares the user and movie datasets of `config` if not prepared yet.

  Args:
    config: a `movielens_users` config name: '32m', '100k', 'synthetic-small'...
    data_dir: TFDS data directory (TFDS's default when None).
    manual_dir: a folder holding the official MovieLens archive (the .zip or
      its extracted folder), for machines without internet.
    download: whether a real release may be downloaded if not found locally.

  Raises:
    DatasetNotFoundError: the release is neither local nor downloadable.
    MovieLensFormatError: the archive or its files are not what the config
      expects (named, with the file and line).
  """
  for name in (config, f"{config}-movies"):
    builder = _builder(name, data_dir)
    if builder.is_prepared():
      continue
    release = builder.builder_config
    local = manual_dir and release.folder and any(
        tf.io.gfile.exists(os.path.join(manual_dir, f))
        for f in (release.folder, release.archive_name))
    if not (download or local or release.is_synthetic):
      raise DatasetNotFoundError(
          f"{DATASET_NAME}/{name} is not prepared in {builder.data_dir}, and "
          f"{manual_dir or 'no manual_dir'} holds no {release.archive_name} "
          f"or {release.folder}/. Allow the download, or pass the official "
          "MovieLens archive (the .zip or its extracted folder) through "
          f"manual_dir.\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except movielens_users.MovieLensFormatError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      if local or release.is_synthetic:
        raise
      raise DatasetNotFoundError(
          f"Could not download {release.url} for {DATASET_NAME}/{name}: {e}\n"
          "Without internet, pass the official archive (the .zip or its "
          f"extracted folder) through manual_dir.\n"
          f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}") from e


def _records(builder: tfds.core.DatasetBuilder, decode) -> tf.data.Dataset:
  """Batches of the builder's train records, parsed with its own spec.

  TFDS's `as_dataset` parses and decodes one example at a time (~70 us each:
  14 s for ml-32m's 200k users before any decoding). Parsing a thousand
  records at once and decoding whole columns costs a few seconds instead.
  """
  spec = {}
  for name, info in builder.info.features.get_serialized_info().items():
    if info.shape == ():
      spec[name] = tf.io.FixedLenFeature([], info.tf_dtype)
    else:
      spec[name] = tf.io.RaggedFeature(info.tf_dtype)
  files = [os.fspath(f) for f in builder.info.splits["train"].filepaths]
  ds = tf.data.TFRecordDataset(files, num_parallel_reads=len(files))
  ds = ds.batch(1024).map(lambda s: decode(tf.io.parse_example(s, spec)),
                          num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def load_movies(config: str, data_dir: str | None = None) -> Movies:
  """Reads the prepared `<config>-movies` dataset, movies in id order."""
  ids, titles, genres = [], [], []
  for batch in _records(_builder(f"{config}-movies", data_dir), lambda x: x):
    ids.append(batch[features.MOVIE_ID].numpy())
    titles.append(batch[features.TITLE].numpy())
    genres += batch[features.GENRES].to_list()
  if not ids:
    raise ValueError(f"{DATASET_NAME}/{config}-movies has no movies.")
  ids = np.concatenate(ids).astype(object)
  order = _id_order(ids)
  titles = np.concatenate(titles)[order]
  return Movies(
      movie_ids=ids[order],
      titles=np.array([t.decode() for t in titles], dtype=object),
      genres=[[g.decode() for g in genres[i]] for i in order])


def load(config: str,
         data_dir: str | None = None,
         movies: Movies | None = None) -> Ratings:
  """Reads the prepared per-user dataset of `config` into flat `Ratings`.

  Records are parsed in batches (see `_records`) and each column of a batch
  is decoded at once by the builder's `decode_flat`.

  Rows come out grouped by user, users in id order (numeric where ids are
  numbers, as in MovieLens), each user's ratings in time order as stored; so
  a split is the same whatever order TFDS stored the users in.

  Args:
    config: the `movielens_users` config name.
    data_dir: TFDS data directory.
    movies: the config's movie table, if already loaded.
  """
  movies = movies or load_movies(config, data_dir)
  builder = _builder(config, data_dir)
  movie_table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          tf.constant(movies.movie_ids.astype(bytes)),
          tf.range(len(movies.movie_ids), dtype=tf.int32)),
      default_value=-1)

  def decode(parsed):
    columns = movielens_users.decode_flat(parsed)
    columns[features.MOVIE_ID] = movie_table.lookup(columns[features.MOVIE_ID])
    return columns

  chunks: dict[str, list[np.ndarray]] = {}
  for batch in _records(builder, decode).as_numpy_iterator():
    for name, values in batch.items():
      chunks.setdefault(name, []).append(values)
  if not chunks:
    raise ValueError(f"{DATASET_NAME}/{config} has no ratings.")
  columns = {name: np.concatenate(values) for name, values in chunks.items()}
  del chunks

  if (columns[features.MOVIE_ID] < 0).any():
    raise ValueError(f"{DATASET_NAME}/{config}: a rated movie is missing from "
                     f"{config}-movies; the two datasets do not match.")
  user_ids = columns[features.USER_ID].astype(object)
  lengths = columns[movielens_users.ROW_LENGTHS]
  user_order = _id_order(user_ids)
  starts = np.cumsum(lengths) - lengths
  # Users in id order, each keeping its ratings in time order, as stored.
  sorted_lengths = lengths[user_order]
  order = (np.repeat(starts[user_order] - (np.cumsum(sorted_lengths) -
                                           sorted_lengths), sorted_lengths) +
           np.arange(lengths.sum()))
  oracle = columns.get(features.ORACLE)
  return Ratings(
      user_ids=user_ids[user_order],
      movie_ids=movies.movie_ids,
      user=np.repeat(np.arange(len(user_order), dtype=np.int32),
                     sorted_lengths),
      movie=columns[features.MOVIE_ID][order],
      rating=columns[features.RATING][order],
      timestamp=columns[features.TIMESTAMP][order],
      oracle=None if oracle is None else oracle[order])


def _by_user_and_time(ratings: Ratings) -> np.ndarray:
  """Row order by (user, timestamp); free when rows are already so, as `load`
  returns them."""
  user, time = ratings.user, ratings.timestamp
  if ((user[1:] > user[:-1]) |
      ((user[1:] == user[:-1]) & (time[1:] >= time[:-1]))).all():
    return np.arange(len(user))
  return np.lexsort((time, user))


def _id_order(ids: np.ndarray) -> np.ndarray:
  """Order of ids: numeric where all are integers (MovieLens), else bytewise."""
  try:
    return np.argsort(np.array([int(i) for i in ids], dtype=np.int64),
                      kind="stable")
  except ValueError:
    return np.argsort(ids.astype(bytes), kind="stable")


def split(ratings: Ratings,
          method: SplitMethod = "random",
          test_fraction: float = 0.2,
          seed: int = 42) -> tuple[Ratings, Ratings]:
  """Splits ratings deterministically into (train, test).

  'random' is the notebook's split: sklearn's
  `train_test_split(test_size=test_fraction, random_state=seed)` over the
  ratings in ratings.csv order (user, then movie), reproduced without sklearn:
  the first ceil(test_fraction * n) rows of a RandomState(seed) permutation are
  the test set. For ml-32m this gives the notebook's 25,600,163 / 6,400,041.

  'temporal' holds out each user's latest ratings: round(test_fraction * n_u)
  of them, at least one, always leaving one in train. Ties in time are broken
  by the canonical order, so the split is deterministic; `seed` is unused.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
  n = len(ratings)
  if method == "random":
    num_test = int(np.ceil(test_fraction * n))
    if num_test >= n:
      raise ValueError(f"{n} ratings are too few to split {test_fraction}.")
    csv_order = np.argsort(
        ratings.user.astype(np.int64) << 32 | ratings.movie, kind="stable")
    perm = np.random.RandomState(seed).permutation(n)
    is_test = np.zeros(n, dtype=bool)
    is_test[csv_order[perm[:num_test]]] = True
  elif method == "temporal":
    order = _by_user_and_time(ratings)
    counts = np.bincount(ratings.user, minlength=len(ratings.user_ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    held = np.clip(np.round(test_fraction * counts), 1, counts - 1)
    user = ratings.user[order]
    position = np.arange(n) - starts[user]
    is_test = np.empty(n, dtype=bool)
    is_test[order] = position >= (counts - held)[user]
  else:
    raise ValueError(f"split method must be one of {SPLIT_METHODS}, "
                     f"got {method!r}.")
  return ratings.take(~is_test), ratings.take(is_test)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """The model's id vocabularies, built from the training split.

  Most frequent first (StringLookup's convention); ids outside them go to the
  model's OOV bucket. `movie_counts` are the training ratings of each movie in
  `movie_ids` order: popularity for baselines and sampling-bias correction.
  """

  user_ids: np.ndarray  # bytes
  movie_ids: np.ndarray  # bytes
  movie_counts: np.ndarray  # int64

  @classmethod
  def from_ratings(cls, train: Ratings) -> Vocabulary:
    user_counts = np.bincount(train.user, minlength=len(train.user_ids))
    movie_counts = np.bincount(train.movie, minlength=len(train.movie_ids))
    users = _by_count(user_counts)
    movies = _by_count(movie_counts)
    return cls(
        user_ids=train.user_ids[users].astype(bytes),
        movie_ids=train.movie_ids[movies].astype(bytes),
        movie_counts=movie_counts[movies])

  def save(self, directory: str) -> None:
    """Writes user_ids.txt, movie_ids.txt and movie_counts.txt, one per line."""
    tf.io.gfile.makedirs(directory)
    for name, values in (("user_ids", self.user_ids),
                         ("movie_ids", self.movie_ids),
                         ("movie_counts", self.movie_counts)):
      with tf.io.gfile.GFile(f"{directory}/{name}.txt", "w") as f:
        f.write("\n".join(v.decode() if isinstance(v, bytes) else str(v)
                          for v in values) + "\n")

  @classmethod
  def load(cls, directory: str) -> Vocabulary:
    def read(name):
      with tf.io.gfile.GFile(f"{directory}/{name}.txt") as f:
        return f.read().splitlines()

    return cls(
        user_ids=np.array(read("user_ids"), dtype=bytes),
        movie_ids=np.array(read("movie_ids"), dtype=bytes),
        movie_counts=np.array(read("movie_counts"), dtype=np.int64))


def _by_count(counts: np.ndarray) -> np.ndarray:
  """Indices with a nonzero count, most frequent first, ties by index."""
  present = np.flatnonzero(counts)
  return present[np.argsort(-counts[present], kind="stable")]


def make_dataset(ratings: Ratings,
                 batch_size: int,
                 shuffle: bool = True,
                 seed: int = 42,
                 movie_counts: np.ndarray | None = None,
                 drop_remainder: bool = False,
                 num_shards: int = 1,
                 shard_index: int = 0) -> tf.data.Dataset:
  """Batches `ratings` into the dicts the model trains on.

  Each batch is one gather from in-memory columns, so the pipeline costs
  little per rating. With `shuffle`, every pass over the dataset draws a new
  permutation (deterministic given `seed`), as `shuffle(reshuffle_each_iteration
  =True)` would, without its per-element cost.

  Args:
    ratings: the split to batch.
    batch_size: ratings per batch; the last batch may be smaller.
    shuffle: whether to reshuffle the ratings on every pass.
    seed: seed of the permutations.
    movie_counts: training ratings per movie, indexed by `ratings.movie` codes
      (defaults to the counts in `ratings`); gives `movie_sampling_prob`.
    drop_remainder: drop the last, smaller batch of each pass, so every batch
      has a static size (the model then splits retrieval chunks statically).
      With `shuffle`, each pass drops different ratings.
    num_shards: deal the batches round-robin to this many input pipelines
      (one per worker of a distributed run, see `ncf_tfrs.distribute`); with
      `drop_remainder`, each pipeline gets the same number of batches.
    shard_index: which pipeline's batches (shard_index, shard_index +
      num_shards, ...) this dataset yields. Every pipeline draws the same
      permutations from `seed`, so the shards are disjoint.

  Returns:
    A dataset of dicts: user_id and movie_id (tf.string), liked and
    user_rating (float32), movie_sampling_prob (float32).
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  n = len(ratings)
  if movie_counts is None:
    movie_counts = np.bincount(ratings.movie, minlength=len(ratings.movie_ids))
  sampling_prob = tf.constant(movie_counts / max(movie_counts.sum(), 1),
                              dtype=tf.float32)
  user_ids = tf.constant(ratings.user_ids.astype(bytes))
  movie_ids = tf.constant(ratings.movie_ids.astype(bytes))
  user = tf.constant(ratings.user)
  movie = tf.constant(ratings.movie)
  rating = tf.constant(ratings.rating)
  num_batches = n // batch_size if drop_remainder else -(-n // batch_size)
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} not in [0, {num_shards}).")
  if drop_remainder:
    num_batches -= num_batches % num_shards
  if num_batches < num_shards:
    raise ValueError(f"{n} ratings make no batch of {batch_size} for each of "
                     f"{num_shards} shards.")
  num_batches_here = len(range(shard_index, num_batches, num_shards))

  def batch(index):
    u = tf.gather(user, index)
    m = tf.gather(movie, index)
    r = tf.gather(rating, index)
    return {
        features.USER_ID: tf.gather(user_ids, u),
        features.MOVIE_ID: tf.gather(movie_ids, m),
        features.LIKED: tf.cast(r > features.LIKED_THRESHOLD, tf.float32),
        features.RATING: r,
        "movie_sampling_prob": tf.gather(sampling_prob, m),
    }

  def batches_of(order):
    ds = tf.data.Dataset.range(shard_index, num_batches, num_shards).map(
        lambda i: order[i * batch_size:(i + 1) * batch_size])
    if drop_remainder:
      ds = ds.map(lambda index: tf.ensure_shape(index, [batch_size]))
    return ds

  if shuffle:
    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = ds.take(1).flat_map(lambda s: batches_of(
        tf.random.experimental.stateless_shuffle(
            tf.range(n), seed=tf.stack([s, tf.constant(seed, tf.int64)]))))
  else:
    ds = batches_of(tf.range(n))
  ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches_here))
  return ds.prefetch(tf.data.AUTOTUNE)
