"""ml-100k from RecBole's wheel: written files parse as GroupLens's u.data/u.item."""

import zipfile

import numpy as np
import pytest

from ncf_tfrs import features
from ncf_tfrs.datasets.movielens_users import formats
from ncf_tfrs.datasets.movielens_users import recbole_ml100k

# A few rows in RecBole's atomic-file format, as the 1.2.1 wheel writes them.
INTER = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
         "196\t242\t3\t881250949\n"
         "186\t302\t3\t891717742\n"
         "22\t242\t1\t878887116\n")
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\t"
        "class:token_seq\n"
        "242\tKolya\t1996\tComedy\n"
        "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
        "267\tunkonwn\tunkonwn\tunknown\n"
        "543\tMis\u00e9rables, Les\t1995\tDrama Musical\n")


def _wheel(tmp_path, inter=INTER, item=ITEM):
  path = tmp_path / "recbole-1.2.1-py3-none-any.whl"
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("recbole/__init__.py", "")
    if inter is not None:
      archive.writestr(recbole_ml100k.INTER_MEMBER, inter)
    if item is not None:
      archive.writestr(recbole_ml100k.ITEM_MEMBER, item)
  return path


def test_written_files_parse_as_ml100k(tmp_path):
  summary = recbole_ml100k.convert(_wheel(tmp_path), tmp_path / "out")
  assert (summary["ratings"], summary["users"], summary["movies"]) == (3, 3, 2)
  folder = tmp_path / "out" / "ml-100k"

  ratings = formats.read_100k_ratings(folder / "u.data")
  np.testing.assert_array_equal(ratings[features.USER_ID], [196, 186, 22])
  np.testing.assert_array_equal(ratings[features.MOVIE_ID], [242, 302, 242])
  np.testing.assert_array_equal(ratings[features.RATING], [3, 3, 1])
  np.testing.assert_array_equal(ratings[features.TIMESTAMP],
                                [881250949, 891717742, 878887116])

  movies = formats.read_100k_movies(folder / "u.item")
  np.testing.assert_array_equal(movies[features.MOVIE_ID], [242, 302, 267, 543])
  assert list(movies[features.TITLE]) == [
      "Kolya (1996)", "L.A. Confidential (1997)", "unknown",
      "Mis\u00e9rables, Les (1995)"]
  assert list(movies[features.GENRES]) == [
      ("Comedy",), ("Crime", "Film-Noir", "Mystery", "Thriller"),
      ("unknown",), ("Drama", "Musical")]
  # Every rated movie is listed: the builder's join accepts the pair.
  formats.movie_index(ratings, movies, file_format=formats.FORMATS["100k"],
                      ratings_source=folder / "u.data")


@pytest.mark.parametrize("make, expected", [
    (lambda p: _wheel(p, inter=INTER + "7\t242\tfour\t881250949\n"),
     "ml-100k.inter, line 5: rating 'four' is not an integer"),
    (lambda p: _wheel(p, item=None), "no member " + recbole_ml100k.ITEM_MEMBER),
    (lambda p: (p / "not.whl").write_text("hello") and p / "not.whl",
     "not a readable wheel"),
])
def test_bad_input_fails_naming_file_and_line(tmp_path, make, expected):
  wheel = make(tmp_path)
  with pytest.raises(recbole_ml100k.RecboleWheelError, match=expected) as info:
    recbole_ml100k.convert(wheel, tmp_path / "out")
  assert str(wheel) in str(info.value)
  assert not (tmp_path / "out" / "ml-100k" / "u.data").exists()
