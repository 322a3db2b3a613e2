"""The splits, vocabularies and batches the model trains on."""

import collections

import numpy as np
import pytest

from ncf_tfrs import features
from ncf_tfrs import data as data_lib


def _ratings(num_users=50, num_movies=40, seed=0) -> data_lib.Ratings:
  """Small ratings grouped by user and sorted by time, as `data_lib.load` gives."""
  rng = np.random.default_rng(seed)
  users, movies, times = [], [], []
  for u in range(num_users):
    n = rng.integers(3, 20)
    users += [u] * n
    movies += list(rng.choice(num_movies, n, replace=False))
    times += list(np.sort(rng.integers(0, 10**6, n)))
  n = len(users)
  return data_lib.Ratings(
      user_ids=np.array([f"u{i}".encode() for i in range(num_users)], object),
      movie_ids=np.array([f"m{i}".encode() for i in range(num_movies)], object),
      user=np.array(users, np.int32),
      movie=np.array(movies, np.int32),
      rating=rng.choice(np.arange(1, 11) / 2, n).astype(np.float32),
      timestamp=np.array(times, np.int64))


def _pairs(r: data_lib.Ratings) -> set[tuple[bytes, bytes]]:
  return set(zip(r.user_ids[r.user], r.movie_ids[r.movie]))


def test_random_split_is_the_notebook_split_size_and_deterministic():
  r = _ratings()
  train, test = data_lib.split(r, "random", 0.2, seed=42)
  assert len(test) == int(np.ceil(0.2 * len(r)))
  assert len(train) + len(test) == len(r)
  assert _pairs(train) | _pairs(test) == _pairs(r)
  assert not _pairs(train) & _pairs(test)
  again = data_lib.split(r, "random", 0.2, seed=42)[1]
  assert _pairs(again) == _pairs(test)
  other = data_lib.split(r, "random", 0.2, seed=7)[1]
  assert _pairs(other) != _pairs(test)


def test_random_split_does_not_depend_on_row_order():
  r = _ratings()
  shuffled = r.take(np.random.default_rng(1).permutation(len(r)))
  assert (_pairs(data_lib.split(shuffled, "random")[1]) ==
          _pairs(data_lib.split(r, "random")[1]))


@pytest.mark.parametrize("shuffle_rows", [False, True])
def test_temporal_split_holds_out_each_users_latest(shuffle_rows):
  r = _ratings()
  if shuffle_rows:
    r = r.take(np.random.default_rng(2).permutation(len(r)))
  train, test = data_lib.split(r, "temporal", 0.25)
  for u in range(len(r.user_ids)):
    train_times = train.timestamp[train.user == u]
    test_times = test.timestamp[test.user == u]
    assert len(train_times) >= 1 and len(test_times) >= 1
    assert test_times.min() >= train_times.max()
    total = len(train_times) + len(test_times)
    assert len(test_times) == np.clip(round(0.25 * total), 1, total - 1)


def test_stratified_split_holds_out_each_users_share_at_random():
  r = _ratings()
  train, test = data_lib.split(r, "stratified", 0.25, seed=42)
  assert _pairs(train) | _pairs(test) == _pairs(r)
  assert not _pairs(train) & _pairs(test)
  for u in range(len(r.user_ids)):
    total = int((r.user == u).sum())
    assert (train.user == u).sum() == round(0.75 * total)
  # Random within each user, not the latest: some user has a held-out
  # rating older than one of their training ratings.
  assert any(test.timestamp[test.user == u].min() <
             train.timestamp[train.user == u].max()
             for u in range(len(r.user_ids)) if (test.user == u).any())
  assert _pairs(data_lib.split(r, "stratified", 0.25, seed=42)[1]) == _pairs(
      test)
  assert _pairs(data_lib.split(r, "stratified", 0.25, seed=7)[1]) != _pairs(
      test)


@pytest.mark.parametrize("method", ["random", "temporal", "stratified"])
def test_validation_is_carved_from_train_never_from_test(method):
  r = _ratings()
  train_and_validation, test = data_lib.split(r, method, 0.2, seed=42)
  train, valid = data_lib.carve_validation(train_and_validation, method, 0.1,
                                           seed=42)
  assert _pairs(train) | _pairs(valid) == _pairs(train_and_validation)
  assert not _pairs(train) & _pairs(valid)
  assert not _pairs(valid) & _pairs(test)
  if method == "random":
    assert len(valid) == int(np.ceil(0.1 * len(train_and_validation)))
  elif method == "temporal":  # Each user's latest training ratings, as the test split is drawn.
    for u in range(len(r.user_ids)):
      assert (valid.timestamp[valid.user == u].min() >=
              train.timestamp[train.user == u].max())
  again = data_lib.carve_validation(train_and_validation, method, 0.1, 42)
  assert _pairs(again[1]) == _pairs(valid)


def test_split_rejects_bad_arguments():
  r = _ratings()
  with pytest.raises(ValueError, match="test_fraction"):
    data_lib.split(r, "random", 1.5)
  with pytest.raises(ValueError, match="split method"):
    data_lib.split(r, "by_moon_phase")


def test_vocabulary_comes_from_train_most_frequent_first(tmp_path):
  r = _ratings()
  train, _ = data_lib.split(r, "random", 0.5, seed=3)
  vocab = data_lib.Vocabulary.from_ratings(train)
  counts = collections.Counter(train.movie_ids[train.movie])
  assert set(vocab.movie_ids) == set(counts)
  assert list(vocab.movie_counts) == [counts[m] for m in vocab.movie_ids]
  assert all(np.diff(vocab.movie_counts) <= 0)
  assert set(vocab.user_ids) == set(train.user_ids[train.user])
  vocab.save(str(tmp_path))
  loaded = data_lib.Vocabulary.load(str(tmp_path))
  np.testing.assert_array_equal(loaded.movie_ids, vocab.movie_ids)
  np.testing.assert_array_equal(loaded.user_ids, vocab.user_ids)
  np.testing.assert_array_equal(loaded.movie_counts, vocab.movie_counts)


def _one_pass(ds):
  rows = []
  for b in ds.as_numpy_iterator():
    rows += list(zip(b[features.USER_ID], b[features.MOVIE_ID],
                     b[features.RATING], b[features.LIKED]))
  return rows


def test_rated_history_holds_each_users_movies_over_the_vocabulary(tmp_path):
  r = _ratings()
  train, test = data_lib.split(r, "random", 0.2, seed=42)
  vocab = data_lib.Vocabulary.from_ratings(train)
  history = data_lib.RatedHistory.from_ratings(r, vocab)
  assert len(history.row_splits) == len(vocab.user_ids) + 1
  catalog = set(vocab.movie_ids)
  expected = collections.defaultdict(set)
  for user, movie in _pairs(r):
    if movie in catalog:  # Movies only held out are not in the catalog.
      expected[user].add(movie)
  for i, user in enumerate(vocab.user_ids):
    row = history.row(i)
    assert (np.diff(row) > 0).all()  # ascending, distinct
    assert set(vocab.movie_ids[row]) == expected[user]
  history.save(str(tmp_path / "rated.npz"))
  again = data_lib.RatedHistory.load(str(tmp_path / "rated.npz"))
  np.testing.assert_array_equal(again.movies, history.movies)
  np.testing.assert_array_equal(again.row_splits, history.row_splits)
  assert list(again.user_ids) == list(vocab.user_ids)


def test_dataset_pass_yields_every_rating_once_with_labels():
  r = _ratings()
  ds = data_lib.make_dataset(r, batch_size=64, shuffle=True, seed=5)
  rows = _one_pass(ds)
  expected = list(zip(r.user_ids[r.user], r.movie_ids[r.movie], r.rating))
  assert sorted(row[:3] for row in rows) == sorted(expected)
  for _, _, rating, liked in rows:
    assert liked == float(rating > 3.0)
  assert ds.cardinality().numpy() == -(-len(r) // 64)


def test_dataset_reshuffles_each_pass_deterministically():
  r = _ratings()
  ds = data_lib.make_dataset(r, batch_size=64, shuffle=True, seed=5, passes=2)
  both = _one_pass(ds)
  first, second = both[:len(r)], both[len(r):]
  assert first != second and sorted(first) == sorted(second)
  same_seed = data_lib.make_dataset(r, batch_size=64, shuffle=True, seed=5)
  assert _one_pass(same_seed) == first
  assert _one_pass(ds) == both  # Iterated again: the same passes.
  in_order = _one_pass(data_lib.make_dataset(r, batch_size=64, shuffle=False))
  assert [row[:2] for row in in_order] == list(
      zip(r.user_ids[r.user], r.movie_ids[r.movie]))


@pytest.mark.parametrize("shards", [1, 2])
def test_resumed_dataset_goes_on_where_the_whole_run_was(shards):
  r = _ratings()
  def batches(first_batch):
    ds = data_lib.make_dataset(r, batch_size=32, shuffle=True, seed=5,
                               drop_remainder=True, num_shards=shards,
                               shard_index=shards - 1, passes=3,
                               first_batch=first_batch, history_share=0.25)
    # The histories drawn for a batch too: a resumed run trains on the same.
    return [(b[features.MOVIE_ID].tolist(),
             b[features.HISTORY_MOVIE_ID].tolist())
            for b in ds.as_numpy_iterator()]
  whole = batches(0)
  per_pass = len(whole) // 3
  for first in (1, per_pass - 1, per_pass, per_pass + 2):
    assert batches(first) == whole[first:], first
  assert batches(3 * per_pass) == []  # Killed after its last backup.
  with pytest.raises(ValueError, match="first_batch"):
    batches(3 * per_pass + 1)


def test_dataset_gives_movie_sampling_probability():
  r = _ratings()
  batch = next(data_lib.make_dataset(r, batch_size=len(r), shuffle=False)
               .as_numpy_iterator())
  counts = collections.Counter(r.movie_ids[r.movie])
  for movie, prob in zip(batch[features.MOVIE_ID],
                         batch["movie_sampling_prob"]):
    assert prob == pytest.approx(counts[movie] / len(r))


def test_load_reads_back_exactly_what_was_generated(data_dir):
  from ncf_tfrs.datasets.movielens_users import synthetic  # pylint: disable=g-import-not-at-top
  data = synthetic.generate(synthetic.SPECS["synthetic-small"])
  ratings = data_lib.load("synthetic-small", data_dir)
  assert len(ratings) == data.num_ratings
  got = sorted(zip(ratings.user_ids[ratings.user].astype(str),
                   ratings.movie_ids[ratings.movie].astype(str),
                   ratings.rating, ratings.timestamp, ratings.oracle))
  users = np.repeat(data.user_ids, np.diff(data.row_splits))
  want = sorted(zip(users, data.movie_ids[data.movie_index], data.rating,
                    data.timestamp, data.oracle_liked_prob))
  assert got == want
  # Grouped by user in numeric id order, each user's ratings in time order.
  assert list(ratings.user_ids[:3].astype(str)) == ["1", "2", "3"]
  assert (np.diff(ratings.user) >= 0).all()
  same_user = np.diff(ratings.user) == 0
  assert (np.diff(ratings.timestamp)[same_user] >= 0).all()


def test_load_movies_has_titles_and_genres(data_dir):
  movies = data_lib.load_movies("synthetic-small", data_dir)
  assert len(movies.movie_ids) == 1682
  assert [int(m) for m in movies.movie_ids] == sorted(
      int(m) for m in movies.movie_ids)
  assert all(isinstance(t, str) and t for t in movies.titles)
  assert all(movies.genres)


def test_dataset_drop_remainder_gives_static_full_batches():
  r = _ratings()
  ds = data_lib.make_dataset(r, batch_size=64, drop_remainder=True)
  assert ds.element_spec[features.USER_ID].shape.as_list() == [64]
  rows = _one_pass(ds)
  assert len(rows) == (len(r) // 64) * 64
  assert len(set(rows)) == len(rows)
  with pytest.raises(ValueError, match="no batch"):
    data_lib.make_dataset(r, batch_size=len(r) + 1, drop_remainder=True)


def test_prepare_offline_without_the_archive_names_what_is_missing(tmp_path):
  with pytest.raises(data_lib.DatasetNotFoundError,
                     match=r"holds no ml-1m\.zip or ml-1m/"):
    data_lib.prepare("1m", data_dir=str(tmp_path / "data"),
                     manual_dir=str(tmp_path), download=False)


def test_prepare_says_how_to_go_offline_when_the_download_fails(
    tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def no_network(self, *args, **kwargs):
    raise ConnectionError("Name or service not known")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      no_network)
  monkeypatch.setattr(data_lib.movielens, "_reachable", lambda url: True)
  with pytest.raises(data_lib.DatasetNotFoundError,
                     match="(?s)Could not download .*ml-100k.zip.*manual_dir"):
    data_lib.prepare("100k", data_dir=str(tmp_path))


def test_prepare_fails_fast_when_grouplens_cannot_be_reached(
    tmp_path, monkeypatch):
  import socket  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  tried = []

  def refused(address, timeout=None):
    tried.append((address, timeout))
    raise OSError("Network is unreachable")

  def download(self, *args, **kwargs):
    raise AssertionError("TFDS was asked to download (and would retry)")

  monkeypatch.setattr(socket, "create_connection", refused)
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      download)
  with pytest.raises(data_lib.DatasetNotFoundError) as info:
    data_lib.prepare("100k", data_dir=str(tmp_path))
  message = str(info.value)
  assert "ml-100k.zip cannot be reached" in message
  assert "no manual_dir given" in message
  assert tried == [(("files.grouplens.org", 443), 5.0)]


def test_histories_are_the_users_first_ratings_less_the_own_movie():
  r = _ratings()
  rated = {(u, m): x for u, m, x in zip(r.user_ids[r.user],
                                        r.movie_ids[r.movie], r.rating)}
  # `_ratings` lists each user's ratings in time order.
  first = {u: list(r.movie_ids[r.movie[r.user_ids[r.user] == u]][:6])
           for u in set(r.user_ids[r.user])}
  ds = data_lib.make_dataset(r, batch_size=40, seed=5, drop_remainder=True,
                             history_share=0.25, history_length=6)
  lengths = []
  for batch in ds.as_numpy_iterator():
    ids = batch[features.HISTORY_MOVIE_ID]
    assert ids.shape == (10, 6)  # The batch's first quarter, 6 wide.
    for i in range(10):
      user, own = batch[features.USER_ID][i], batch[features.MOVIE_ID][i]
      given = [(m, x) for m, x in zip(ids[i], batch[features.HISTORY_RATING][i])
               if m != features.HISTORY_PAD.encode()]
      assert own not in [m for m, _ in given]
      for movie, rating in given:
        assert rated[(user, movie)] == rating
      # In time order: the drawn length's first ratings, less the own movie.
      movies = [m for m in ids[i] if m != features.HISTORY_PAD.encode()]
      assert movies == [m for m in first[user][:len(movies) + 1]
                        if m != own][:len(movies)]
      lengths.append(len(given))
  assert min(lengths) >= 0 and max(lengths) == 6 and len(set(lengths)) > 3
  again = data_lib.make_dataset(r, batch_size=40, seed=5, drop_remainder=True,
                                history_share=0.25, history_length=6)
  first = next(ds.as_numpy_iterator())[features.HISTORY_MOVIE_ID]
  assert (next(again.as_numpy_iterator())[features.HISTORY_MOVIE_ID] ==
          first).all()


def test_held_out_users_take_all_their_ratings_and_give_their_first():
  r = _ratings()
  kept, held = data_lib.hold_out_users(r, 0.2, seed=3)
  assert len(np.unique(held.user)) == 10
  assert not set(kept.user) & set(held.user)
  assert len(kept) + len(held) == len(r)
  assert data_lib.hold_out_users(r, 0.2, seed=3)[1].user.tolist() == (
      held.user.tolist())
  first, rest = data_lib.first_by_time(held, 4)
  for u in np.unique(held.user):
    times = np.sort(held.timestamp[held.user == u])
    assert sorted(first.timestamp[first.user == u]) == list(times[:4])
    assert sorted(rest.timestamp[rest.user == u]) == list(times[4:])
