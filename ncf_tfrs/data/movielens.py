"""TFDS -> columns: MovieLens from the `movielens_users` dataset as flat arrays.

The TFDS builder stores one example per user. Training wants one example per
rating, so `load` reads the prepared dataset once into flat, columnar numpy
arrays (`Ratings`), with users and movies as int32 codes into their id tables.
This is the only pass over TFDS; every epoch after it reads memory.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import urllib.parse
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from ncf_tfrs import features
from ncf_tfrs.datasets import movielens_users  # Also registers the builder.

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

  def concat(self, other: Ratings) -> Ratings:
    """These ratings followed by `other`'s, which share their id tables."""
    if (other.user_ids is not self.user_ids or
        other.movie_ids is not self.movie_ids):
      raise ValueError("Ratings to concatenate must share their id tables.")
    oracle = (None if self.oracle is None or other.oracle is None
              else np.concatenate([self.oracle, other.oracle]))
    return dataclasses.replace(
        self,
        user=np.concatenate([self.user, other.user]),
        movie=np.concatenate([self.movie, other.movie]),
        rating=np.concatenate([self.rating, other.rating]),
        timestamp=np.concatenate([self.timestamp, other.timestamp]),
        oracle=oracle)


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
    offline = not (download or local or release.is_synthetic)
    if not (offline or local or release.is_synthetic) and not _reachable(
        release.url):
      offline = True
      why = f"{release.url} cannot be reached (no network?)"
    else:
      why = "downloads are off"
    if offline:
      where = (f"{manual_dir} holds no {release.archive_name} or "
               f"{release.folder}/" if manual_dir else "no manual_dir given")
      raise DatasetNotFoundError(
          f"{DATASET_NAME}/{name} is not prepared in {builder.data_dir}, "
          f"{why}, and {where}. Pass the official MovieLens archive (the "
          ".zip or its extracted folder) through manual_dir, or allow the "
          f"download.\n{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
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


def _reachable(url: str, timeout_s: float = 5.0) -> bool:
  """Whether `url`'s host accepts a connection: asked once, quickly, so that
  an offline machine fails in seconds instead of after TFDS's retries."""
  parsed = urllib.parse.urlsplit(url)
  try:
    socket.create_connection(
        (parsed.hostname, parsed.port or 443), timeout=timeout_s).close()
    return True
  except OSError:
    return False


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

def _id_order(ids: np.ndarray) -> np.ndarray:
  """Order of ids: numeric where all are integers (MovieLens), else bytewise."""
  try:
    return np.argsort(np.array([int(i) for i in ids], dtype=np.int64),
                      kind="stable")
  except ValueError:
    return np.argsort(ids.astype(bytes), kind="stable")
