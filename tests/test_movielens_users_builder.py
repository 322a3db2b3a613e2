"""The `movielens_users` TFDS builder, on the dummy data: no network needed."""

import collections
import dataclasses
import pathlib
import shutil
import zipfile
from unittest import mock

import ncf_tfrs  # Before TensorFlow: selects Keras 2.
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ncf_tfrs import features
import ncf_tfrs.datasets  # Registers the builder.
from ncf_tfrs.datasets.movielens_users import formats
from ncf_tfrs.datasets.movielens_users import (
    movielens_users_dataset_builder as mlu)
from ncf_tfrs.datasets.movielens_users import synthetic

Builder = mlu.Builder
DUMMY = pathlib.Path(mlu.__file__).parent / "dummy_data"
REAL = ("100k", "1m", "20m", "25m", "32m", "latest-small")
# Users and movies in each release's dummy data.
NUM_USERS = {r: 4 for r in REAL}
NUM_MOVIES = {"100k": 6, "1m": 6, "20m": 6, "25m": 6, "32m": 6,
              "latest-small": 7}


# ------------------------------------------------- TFDS's own test harness
# DatasetBuilderTestCase prepares each config from dummy_data/ (handed over
# as the manual dir, as the builder has MANUAL_DOWNLOAD_INSTRUCTIONS), reads
# it back and reloads it.


def _builder_test_case(config: str, num_examples: int):
  return type(f"BuilderTest_{config}", (tfds.testing.DatasetBuilderTestCase,),
              {"DATASET_CLASS": Builder,
               "BUILDER_CONFIG_NAMES_TO_TEST": [config],
               "SPLITS": {"train": num_examples},
               "__module__": __name__})


for _release in REAL:
  for _config, _count in ((_release, NUM_USERS[_release]),
                          (_release + "-movies", NUM_MOVIES[_release])):
    _case = _builder_test_case(_config, _count)
    globals()[f"Test{_case.__name__}"] = _case
del _release, _config, _count, _case


# ------------------------------------------------------------------ helpers


def _no_network(*args, **kwargs):
  raise AssertionError(f"Tried to download {args[1:]} {kwargs}")


def _prepare(config: str, data_dir, manual_dir=None):
  """Prepares `config`, failing if it tries to download."""
  builder = tfds.builder(f"movielens_users/{config}", data_dir=str(data_dir))
  with mock.patch.object(tfds.download.DownloadManager,
                         "download_and_extract", _no_network):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else str(manual_dir)))
  return builder


def _read_users(builder) -> dict:
  """{user id: (movie ids, ratings, timestamps)} as Python lists."""
  out = {}
  for ex in tfds.as_numpy(builder.as_dataset(split="train")):
    out[ex[features.USER_ID].decode()] = (
        [m.decode() for m in ex[features.MOVIE_ID]],
        ex[features.RATING].tolist(), ex[features.TIMESTAMP].tolist())
  return out


def _expected_users(release: str) -> dict:
  """The dummy ratings grouped by user and stably sorted by time, in Python."""
  file_format = Builder.builder_configs[release].file_format
  folder = DUMMY / f"ml-{release}"
  if file_format == "100k":
    rows = [l.split("\t") for l in (folder / "u.data").read_text().split("\n")]
  elif file_format == "1m":
    rows = [l.split("::") for l in
            (folder / "ratings.dat").read_text("latin-1").split("\n")]
  else:
    rows = [l.split(",") for l in
            (folder / "ratings.csv").read_text().split("\n")[1:]]
  by_user = collections.defaultdict(list)
  for user, movie, rating, ts in (r for r in rows if len(r) == 4):
    by_user[user].append((int(ts), movie, float(rating)))
  return {u: ([m for _, m, _ in sorted(v, key=lambda x: x[0])],
              [r for _, _, r in sorted(v, key=lambda x: x[0])],
              [t for t, _, _ in sorted(v, key=lambda x: x[0])])
          for u, v in by_user.items()}


def _zip_folder(folder: pathlib.Path, archive: pathlib.Path,
                arcname_root: str = None) -> pathlib.Path:
  """Zips `folder` as `<arcname_root>/<file>`, like the GroupLens zips."""
  arcname_root = arcname_root or folder.name
  with zipfile.ZipFile(archive, "w") as z:
    for path in sorted(folder.iterdir()):
      z.write(path, f"{arcname_root}/{path.name}")
  return archive


# --------------------------------------------------------- registration


def test_registered_with_every_config():
  builder = tfds.builder("movielens_users/32m", data_dir="/nonexistent")
  assert isinstance(builder, Builder)
  assert "movielens_users" in tfds.list_builders(with_community_datasets=False)
  names = {c.name for c in Builder.BUILDER_CONFIGS}
  for release in REAL + ("synthetic-small", "synthetic-32m"):
    assert {release, release + "-movies"} <= names
  assert "32,000,204 ratings" in Builder.builder_configs["32m"].description
  assert "84,432" in Builder.builder_configs["32m"].description
  assert Builder.builder_configs["32m"].url == (
      "https://files.grouplens.org/datasets/movielens/ml-32m.zip")
  # TFDS's own one-example-per-rating `movielens` is a different dataset.
  assert tfds.builder_cls("movielens") is not Builder


def test_features_and_dtypes():
  info = tfds.builder("movielens_users/32m", data_dir="/nonexistent").info
  spec = info.features.get_tensor_info()
  assert spec[features.USER_ID].shape == () and spec[
      features.USER_ID].dtype == tf.string
  assert spec[features.MOVIE_ID].shape == (None,)
  assert spec[features.MOVIE_ID].dtype == tf.string
  assert spec[features.RATING].dtype == tf.float32
  assert spec[features.TIMESTAMP].dtype == tf.int64
  assert features.ORACLE not in spec
  synthetic_info = tfds.builder("movielens_users/synthetic-small",
                                data_dir="/nonexistent").info
  assert synthetic_info.features.get_tensor_info()[features.ORACLE].dtype == (
      tf.float32)
  movies = tfds.builder("movielens_users/32m-movies",
                        data_dir="/nonexistent").info.features
  assert set(movies.keys()) == {features.MOVIE_ID, features.TITLE,
                                features.GENRES}


def test_config_is_validated_and_frozen():
  config = Builder.builder_configs["32m"]
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.url = "https://example.com/other.zip"
  good = dict(name="32m", release="32m", url=config.url, folder="ml-32m",
              file_format="csv",
              rating_scale=formats.RatingScale.HALF_STARS)
  mlu.MovieLensUsersConfig(**good)
  for bad in (dict(name="32m-ratings"), dict(table="tags"),
              dict(file_format="xml"), dict(folder="ml-25m"),
              dict(rating_scale=None)):
    with pytest.raises(ValueError):
      mlu.MovieLensUsersConfig(**{**good, **bad})
  with pytest.raises(ValueError):
    mlu.MovieLensUsersConfig(name="synthetic-small", release="synthetic-small",
                             url=config.url)
  with pytest.raises(ValueError):
    mlu.MovieLensUsersConfig(name="synthetic-huge", release="synthetic-huge")


def test_checksums_registered_for_known_zips():
  url_infos = Builder.url_infos
  for release in ("100k", "1m", "20m", "25m", "latest-small"):
    config = Builder.builder_configs[release]
    assert url_infos[config.url].filename == config.archive_name
  assert url_infos[Builder.builder_configs["25m"].url].size == 261978986
  # No published sha256 for ml-32m was found; TFDS downloads it unchecked.
  assert Builder.builder_configs["32m"].url not in url_infos


# ---------------------------------------------------------------- content


@pytest.mark.parametrize("release", REAL)
def test_manual_folder_gives_users_sorted_by_time(tmp_path, release):
  builder = _prepare(release, tmp_path / "data", manual_dir=DUMMY)
  assert _read_users(builder) == _expected_users(release)
  ex = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
  assert ex[features.MOVIE_ID].dtype == object
  assert ex[features.RATING].dtype == np.float32
  assert ex[features.TIMESTAMP].dtype == np.int64


def test_ties_keep_file_order(tmp_path):
  users = _read_users(_prepare("1m", tmp_path, manual_dir=DUMMY))
  # User 3 rated 1193 then 661 at the same second, in that file order.
  assert users["3"][0][:2] == ["1193", "661"]
  assert users["3"][2][0] == users["3"][2][1]


@pytest.mark.parametrize("release", ["32m", "100k"])
def test_manual_zip(tmp_path, release):
  manual = tmp_path / "manual"
  manual.mkdir()
  _zip_folder(DUMMY / f"ml-{release}", manual / f"ml-{release}.zip")
  builder = _prepare(release, tmp_path / "data", manual_dir=manual)
  assert _read_users(builder) == _expected_users(release)


def test_manual_zip_movies(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _zip_folder(DUMMY / "ml-32m", manual / "ml-32m.zip")
  builder = _prepare("32m-movies", tmp_path / "data", manual_dir=manual)
  movies = {ex[features.MOVIE_ID].decode(): ex for ex in
            tfds.as_numpy(builder.as_dataset(split="train"))}
  assert len(movies) == 6
  assert movies["29"][features.TITLE].decode() == (
      "City of Lost Children, The (Cité des enfants perdus, La) (1995)")
  assert movies["17"][features.GENRES].tolist() == [b"Drama", b"Romance"]
  assert movies["209163"][features.GENRES].tolist() == []


def test_downloads_when_no_local_copy(tmp_path):
  extracted = tmp_path / "extracted"
  shutil.copytree(DUMMY / "ml-32m", extracted / "ml-32m")
  manual = tmp_path / "manual"  # Holds another release only.
  shutil.copytree(DUMMY / "ml-1m", manual / "ml-1m")
  urls = []

  def download_and_extract(self, url):
    urls.append(url)
    return extracted

  builder = tfds.builder("movielens_users/32m", data_dir=str(tmp_path / "d"))
  with mock.patch.object(tfds.download.DownloadManager,
                         "download_and_extract", download_and_extract):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual)))
  assert urls == ["https://files.grouplens.org/datasets/movielens/ml-32m.zip"]
  assert _read_users(builder) == _expected_users("32m")


def test_synthetic_small(tmp_path):
  spec = synthetic.SPECS["synthetic-small"]
  builder = _prepare("synthetic-small", tmp_path)
  assert builder.info.splits["train"].num_examples == spec.num_users
  movies = _prepare("synthetic-small-movies", tmp_path)
  movie_ids = {ex[features.MOVIE_ID] for ex in
               tfds.as_numpy(movies.as_dataset(split="train"))}
  assert len(movie_ids) == spec.num_movies
  num_ratings = 0
  for ex in tfds.as_numpy(builder.as_dataset(split="train")):
    n = len(ex[features.MOVIE_ID])
    num_ratings += n
    assert len(ex[features.RATING]) == len(ex[features.TIMESTAMP]) == n
    assert len(ex[features.ORACLE]) == n
    assert ex[features.ORACLE].dtype == np.float32
    assert np.all(np.diff(ex[features.TIMESTAMP]) >= 0)
    assert set(ex[features.MOVIE_ID]) <= movie_ids
  assert num_ratings == spec.num_ratings


def test_synthetic_matches_generator(tmp_path):
  spec = dataclasses.replace(synthetic.SPECS["synthetic-small"],
                             num_users=30, num_movies=50, num_ratings=900,
                             min_ratings_per_user=5)
  data = synthetic.generate(spec)
  with mock.patch.dict(synthetic.SPECS, {"synthetic-small": spec}):
    users = _read_users(_prepare("synthetic-small", tmp_path))
  assert len(users) == 30
  for u, user_id in enumerate(data.user_ids):
    rows = slice(data.row_splits[u], data.row_splits[u + 1])
    assert users[user_id] == (
        data.movie_ids[data.movie_index[rows]].tolist(),
        data.rating[rows].tolist(), data.timestamp[rows].tolist())


def test_synthetic_csv_release_parses_back_to_the_generated_data(tmp_path):
  """The data suite times the real CSV parser on generated files: they must
  be a release the builder accepts, holding exactly the generated data."""
  spec = dataclasses.replace(synthetic.SPECS["synthetic-small"],
                             num_users=30, num_movies=50, num_ratings=900,
                             min_ratings_per_user=5)
  data = synthetic.generate(spec)
  synthetic.write_csv(data, str(tmp_path / "manual" / "ml-32m"))
  users = _read_users(_prepare("32m", tmp_path / "data",
                               manual_dir=tmp_path / "manual"))
  assert len(users) == 30
  for u, user_id in enumerate(data.user_ids):
    rows = slice(data.row_splits[u], data.row_splits[u + 1])
    expected = zip(data.movie_ids[data.movie_index[rows]].tolist(),
                   data.rating[rows].tolist(), data.timestamp[rows].tolist())
    assert sorted(zip(*users[user_id])) == sorted(expected)
  movies = _prepare("32m-movies", tmp_path / "data",
                    manual_dir=tmp_path / "manual")
  read = {ex[features.MOVIE_ID].decode(): (
      ex[features.TITLE].decode(), [g.decode() for g in ex[features.GENRES]])
          for ex in tfds.as_numpy(movies.as_dataset(split="train"))}
  assert read == {m: (t, list(g)) for m, t, g in
                  zip(data.movie_ids, data.titles, data.genres)}


def test_reload_from_directory(tmp_path):
  _prepare("32m", tmp_path, manual_dir=DUMMY)
  builder = tfds.builder_from_directory(
      str(tmp_path / "movielens_users" / "32m" / "1.0.0"))
  users = _read_users(builder)
  assert users == _expected_users("32m")


# ------------------------------------------------------------------ errors


def _assert_not_prepared(data_dir, config):
  builder = tfds.builder(f"movielens_users/{config}", data_dir=str(data_dir))
  assert not builder.is_prepared()
  with pytest.raises(AssertionError):
    tfds.load(f"movielens_users/{config}", data_dir=str(data_dir),
              download=False)
  leftovers = list((pathlib.Path(data_dir) / "movielens_users").glob(
      f"{config}/*"))
  assert not leftovers, leftovers


def test_failed_prepare_leaves_no_dataset(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY / "ml-100k", manual / "ml-100k")
  with (manual / "ml-100k" / "u.data").open("a") as f:
    f.write("9\t1\t7\t880000000\n")  # Line 15: 7 stars on a 1-5 scale.
  with pytest.raises(formats.MovieLensFormatError,
                     match=r"u\.data, line 15: rating 7 "):
    _prepare("100k", tmp_path / "data", manual_dir=manual)
  _assert_not_prepared(tmp_path / "data", "100k")
  # Once fixed, the same data_dir prepares fine.
  shutil.copy(DUMMY / "ml-100k" / "u.data", manual / "ml-100k" / "u.data")
  assert _prepare("100k", tmp_path / "data", manual_dir=manual).is_prepared()


def test_rating_of_unknown_movie(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY / "ml-latest-small", manual / "ml-latest-small")
  with (manual / "ml-latest-small" / "ratings.csv").open("a") as f:
    f.write("5,424242,4.0,1000000000\n")  # Line 14.
  with pytest.raises(formats.MovieLensFormatError,
                     match=r"ratings\.csv, line 14: movie id 424242 is not in"):
    _prepare("latest-small", tmp_path / "data", manual_dir=manual)
  _assert_not_prepared(tmp_path / "data", "latest-small")


def test_zip_missing_a_file(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  with zipfile.ZipFile(manual / "ml-32m.zip", "w") as z:
    z.write(DUMMY / "ml-32m" / "ratings.csv", "ml-32m/ratings.csv")
  with pytest.raises(formats.MovieLensFormatError) as info:
    _prepare("32m", tmp_path / "data", manual_dir=manual)
  message = str(info.value)
  assert "ml-32m.zip" in message
  assert "missing ml-32m/movies.csv" in message
  assert "found ml-32m/ratings.csv" in message


def test_zip_of_another_release(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  _zip_folder(DUMMY / "ml-1m", manual / "ml-32m.zip")  # Misnamed ml-1m zip.
  with pytest.raises(formats.MovieLensFormatError) as info:
    _prepare("32m", tmp_path / "data", manual_dir=manual)
  message = str(info.value)
  assert "ml-32m.zip is not MovieLens 32m" in message
  assert "missing ml-32m/movies.csv, ml-32m/ratings.csv" in message
  assert "found ml-1m/" in message
  assert "ml-1m/ratings.dat, the ratings file of release(s) 1m" in message
  _assert_not_prepared(tmp_path / "data", "32m")


def test_folder_with_another_releases_files(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY / "ml-1m", manual / "ml-32m")
  with pytest.raises(formats.MovieLensFormatError) as info:
    _prepare("32m-movies", tmp_path / "data", manual_dir=manual)
  message = str(info.value)
  assert "ml-32m/ is not MovieLens 32m: missing ml-32m/movies.csv" in message
  assert "found ml-32m/movies.dat, ml-32m/ratings.dat" in message
  assert "release(s) 1m" in message


# -------------------------------------------------------------- StringList


def test_string_list_round_trip():
  feature = mlu.StringList()
  for values in ([b"17", b"25"], [], [b""], ["Cité", "x"]):
    encoded = feature.encode_example(np.array(values, dtype=object))
    decoded = feature.decode_example(tf.constant(encoded)).numpy().tolist()
    expected = [v.encode() if isinstance(v, str) else v for v in values]
    assert decoded == expected
    assert feature.decode_example_np(encoded).tolist() == expected
  with pytest.raises(ValueError, match="NUL"):
    feature.encode_example([b"a\x00b"])


def test_group_by_user_with_huge_id_ranges():
  # Ranges too wide for one int64 key take the lexsort path; same answer.
  users = np.array([5, 2**62, 5, 1, 2**62, 5], np.int64)
  times = np.array([3, 1, 3, -2**62, 0, 2], np.int64)
  ids, splits, order = mlu._group_by_user(users, times)
  assert ids.tolist() == ["1", "5", str(2**62)]
  assert splits.tolist() == [0, 1, 4, 6]
  assert order.tolist() == [3, 5, 0, 2, 4, 1]
  small_ids, small_splits, small_order = mlu._group_by_user(
      np.array([5, 9, 5, 1, 9, 5]), np.array([3, 1, 3, 0, 0, 2]))
  assert small_ids.tolist() == ["1", "5", "9"]
  assert small_splits.tolist() == [0, 1, 4, 6]
  assert small_order.tolist() == order.tolist()


def test_replaced_zip_is_extracted_again_and_errors_name_its_member(tmp_path):
  manual = tmp_path / "manual"
  bad = tmp_path / "bad" / "ml-latest-small"
  shutil.copytree(DUMMY / "ml-latest-small", bad)
  with (bad / "ratings.csv").open("a") as f:
    f.write("5,1,9.0,1000000000\n")  # Line 14: off the half-star scale.
  manual.mkdir()
  archive = manual / "ml-latest-small.zip"
  _zip_folder(bad, archive, "ml-latest-small")
  with pytest.raises(formats.MovieLensFormatError) as info:
    _prepare("latest-small", tmp_path / "data", manual_dir=manual)
  # The user's zip and its member, not TFDS's extracted copy.
  assert str(info.value).startswith(
      f"{archive}:ml-latest-small/ratings.csv, line 14: rating 9 ")
  # The same data_dir, the zip replaced by a good one: prepared from it.
  archive.unlink()
  _zip_folder(DUMMY / "ml-latest-small", archive)
  builder = _prepare("latest-small", tmp_path / "data", manual_dir=manual)
  assert _read_users(builder) == _expected_users("latest-small")
