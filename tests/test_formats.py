"""The MovieLens file parsers: values, dtypes, and errors naming the line."""

import io
import pathlib
import re

import numpy as np
import pytest

from ncf_tfrs import features
from ncf_tfrs.datasets.movielens_users import formats

DUMMY = (pathlib.Path(formats.__file__).parent / "dummy_data")
Error = formats.MovieLensFormatError


def _write(tmp_path, name, content):
  path = tmp_path / name
  path.write_bytes(content.encode("utf-8") if isinstance(content, str)
                   else content)
  return path


def _raises_at(name, line, fn, *args, **kwargs):
  """Asserts fn raises a MovieLensFormatError naming `name` and `line`."""
  with pytest.raises(Error) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert name in message
  if line is not None:
    assert re.search(rf"\bline {line}\b", message), message
  return message


# ------------------------------------------------------------ good input


def test_100k_ratings_from_dummy_data():
  r = formats.read_100k_ratings(DUMMY / "ml-100k" / "u.data")
  assert r[features.USER_ID].dtype == np.int64
  assert r[features.MOVIE_ID].dtype == np.int64
  assert r[features.RATING].dtype == np.float32
  assert r[features.TIMESTAMP].dtype == np.int64
  assert len(r[features.USER_ID]) == 14
  assert r[features.USER_ID][:2].tolist() == [2, 1]
  assert r[features.MOVIE_ID][:2].tolist() == [3, 1]
  assert r[features.RATING][:2].tolist() == [4.0, 5.0]
  assert r[features.TIMESTAMP][:2].tolist() == [881250949, 874965758]


def test_100k_movies_turns_flags_into_genres():
  m = formats.read_100k_movies(DUMMY / "ml-100k" / "u.item")
  assert m[features.MOVIE_ID].tolist() == [1, 2, 3, 4, 5, 6]
  assert m[features.TITLE][0] == "Toy Story (1995)"
  assert m[features.GENRES][0] == ("Animation", "Children's", "Comedy")
  assert m[features.GENRES][5] == ("unknown",)


def test_1m_ratings_and_latin1_movies():
  r = formats.read_1m_ratings(DUMMY / "ml-1m" / "ratings.dat")
  assert r[features.USER_ID][:3].tolist() == [1, 1, 2]
  assert r[features.MOVIE_ID][:3].tolist() == [1193, 661, 1357]
  assert r[features.RATING][:3].tolist() == [5.0, 3.0, 5.0]
  assert r[features.TIMESTAMP][0] == 978300760
  m = formats.read_1m_movies(DUMMY / "ml-1m" / "movies.dat")
  assert m[features.TITLE][-1] == "Cité des enfants perdus, La (1995)"
  assert m[features.GENRES][0] == ("Animation", "Children's", "Musical")


def test_csv_ratings_and_movies():
  r = formats.read_csv_ratings(DUMMY / "ml-32m" / "ratings.csv")
  assert len(r[features.RATING]) == 13
  assert r[features.RATING][4] == 0.5
  assert r[features.MOVIE_ID][8] == 209163
  m = formats.read_csv_movies(DUMMY / "ml-32m" / "movies.csv")
  title = m[features.TITLE][m[features.MOVIE_ID].tolist().index(29)]
  assert title == ("City of Lost Children, The (Cité des enfants perdus, La) "
                   "(1995)")
  assert m[features.GENRES][-1] == ()  # "(no genres listed)".
  assert m[features.GENRES][0] == ("Drama", "Romance")


def test_parsers_take_file_objects_and_crlf():
  data = b"userId,movieId,rating,timestamp\r\n1,2,3.5,4\r\n5,6,1.0,7\r\n"
  r = formats.read_csv_ratings(io.BytesIO(data), name="mine.csv")
  assert r[features.USER_ID].tolist() == [1, 5]
  assert r[features.RATING].tolist() == [3.5, 1.0]


def test_multiline_quoted_title_keeps_line_numbers(tmp_path):
  path = _write(tmp_path, "movies.csv",
                'movieId,title,genres\n1,"Two\nLines (1999)",Drama\n'
                "x,Bad (2000),Drama\n")
  _raises_at("movies.csv", 4, formats.read_csv_movies, path)


def test_rating_scale():
  whole = formats.RatingScale.WHOLE_STARS
  half = formats.RatingScale.HALF_STARS
  values = np.array([0.5, 1, 2.5, 5, 5.5, 0, 7, np.nan], np.float32)
  assert whole.invalid(values).tolist() == [
      True, False, True, False, True, True, True, True]
  assert half.invalid(values).tolist() == [
      False, False, False, False, True, True, True, True]


def test_movie_index_maps_ratings_to_movie_rows():
  r = formats.read_csv_ratings(DUMMY / "ml-32m" / "ratings.csv")
  m = formats.read_csv_movies(DUMMY / "ml-32m" / "movies.csv")
  index = formats.movie_index(r, m, file_format=formats.FORMATS["csv"],
                              ratings_source=DUMMY / "ml-32m" / "ratings.csv")
  assert index.dtype == np.int32
  np.testing.assert_array_equal(m[features.MOVIE_ID][index],
                                r[features.MOVIE_ID])


# ------------------------------------------------------------ bad ratings


@pytest.mark.parametrize("row, problem", [
    ("1,2,3.5", "expected 4 fields"),
    ("1,2,3.5,4,5", "expected 4 fields"),
    ("x,2,3.5,4", "user id 'x'"),
    ("1,2.5,3.5,4", "movie id '2.5'"),
    ("1,2,good,4", "rating 'good'"),
    ("1,2,nan,4", "rating 'nan'"),
    ("1,2,3.5,", "timestamp ''"),
    ("1,2,3.5,12:00", "timestamp '12:00'"),
])
def test_malformed_csv_rating_names_line(tmp_path, row, problem):
  path = _write(tmp_path, "ratings.csv",
                f"userId,movieId,rating,timestamp\n1,1,4.0,10\n{row}\n"
                "2,2,3.0,11\n")
  message = _raises_at("ratings.csv", 3, formats.read_csv_ratings, path)
  assert problem in message


def test_malformed_100k_rating_names_line(tmp_path):
  path = _write(tmp_path, "u.data", "1\t1\t4\t10\n\n1\t2\t4 10\n")
  message = _raises_at("u.data", 3, formats.read_100k_ratings, path)
  assert "expected 4 fields" in message


@pytest.mark.parametrize("row", ["1::2::3", "1:2::3::4", "1::2::3::4::5",
                                 "1::x::3::4"])
def test_malformed_1m_rating_names_line(tmp_path, row):
  path = _write(tmp_path, "ratings.dat", f"1::1::4::10\n2::1::4::10\n{row}\n")
  _raises_at("ratings.dat", 3, formats.read_1m_ratings, path)


@pytest.mark.parametrize("rating", ["7", "2.5", "0"])
def test_rating_off_whole_star_scale(tmp_path, rating):
  path = _write(tmp_path, "u.data",
                f"1\t1\t4\t10\n1\t2\t5\t11\n2\t1\t{rating}\t12\n")
  message = _raises_at("u.data", 3, formats.read_100k_ratings, path)
  assert "scale" in message and "whole stars" in message


@pytest.mark.parametrize("rating", ["5.5", "0.0", "3.25", "-1"])
def test_rating_off_half_star_scale(tmp_path, rating):
  path = _write(tmp_path, "ratings.csv",
                "userId,movieId,rating,timestamp\n\n1,1,4.0,10\n"
                f"1,2,{rating},11\n")
  # Line 4: the blank line 2 still counts.
  message = _raises_at("ratings.csv", 4, formats.read_csv_ratings, path)
  assert "half stars" in message


def test_1m_scale_is_checked(tmp_path):
  path = _write(tmp_path, "ratings.dat", "1::1::4::10\n1::2::4.5::11\n")
  _raises_at("ratings.dat", 2, formats.read_1m_ratings, path)


@pytest.mark.parametrize("read,name,lines", [
    (formats.read_100k_ratings, "u.data",
     ["3\t7\t4\t10", "1\t2\t4\t11", "1\t5\t3\t12", "3\t7\t2\t13"]),
    (formats.read_1m_ratings, "ratings.dat",
     ["3::7::4::10", "1::2::4::11", "1::5::3::12", "3::7::2::13"]),
    (formats.read_csv_ratings, "ratings.csv",
     ["userId,movieId,rating,timestamp", "1,2,4.0,11", "3,7,4.0,10",
      "3,7,2.0,13"]),
])
def test_duplicate_rating_names_both_lines(tmp_path, read, name, lines):
  path = _write(tmp_path, name, "\n".join(lines) + "\n")
  message = _raises_at(name, 4, read, path)
  first = 3 if name == "ratings.csv" else 1
  assert f"user 3 rated movie 7 again (rating 2; line {first} has 4)" in (
      message)


def test_same_movie_by_other_users_is_no_duplicate(tmp_path):
  path = _write(tmp_path, "u.data", "2\t7\t4\t10\n1\t7\t4\t11\n"
                "1\t8\t3\t12\n2\t8\t5\t13\n")
  assert len(formats.read_100k_ratings(path)[features.USER_ID]) == 4


def test_rating_of_unknown_movie_names_ratings_line(tmp_path):
  ratings = _write(tmp_path, "ratings.csv",
                   "userId,movieId,rating,timestamp\n1,17,4.0,10\n"
                   "1,18,4.0,11\n2,99,3.0,12\n")
  movies = _write(tmp_path, "movies.csv",
                  "movieId,title,genres\n17,A (1),Drama\n18,B (2),Drama\n")
  r = formats.read_csv_ratings(ratings)
  m = formats.read_csv_movies(movies)
  message = _raises_at("ratings.csv", 4, formats.movie_index, r, m,
                       file_format=formats.FORMATS["csv"],
                       ratings_source=ratings, movies_name=str(movies))
  assert "movie id 99" in message and "movies.csv" in message


def test_unknown_movie_line_in_headerless_format(tmp_path):
  ratings = _write(tmp_path, "u.data", "1\t1\t4\t10\n1\t7\t4\t11\n")
  movies = _write(tmp_path, "u.item",
                  "1|A (1995)|||url" + "|0" * 18 + "|1\n")
  r = formats.read_100k_ratings(ratings)
  m = formats.read_100k_movies(movies)
  _raises_at("u.data", 2, formats.movie_index, r, m,
             file_format=formats.FORMATS["100k"], ratings_source=ratings)


@pytest.mark.parametrize("reader, name, content", [
    (formats.read_csv_ratings, "ratings.csv",
     "userId,movieId,rating,timestamp\n"),
    (formats.read_100k_ratings, "u.data", ""),
    (formats.read_1m_ratings, "ratings.dat", "\n\n"),
])
def test_empty_ratings_file(tmp_path, reader, name, content):
  path = _write(tmp_path, name, content)
  message = _raises_at(name, None, reader, path)
  assert "no ratings" in message


def test_empty_csv_file_and_wrong_header(tmp_path):
  path = _write(tmp_path, "ratings.csv", "")
  assert "empty" in _raises_at("ratings.csv", None, formats.read_csv_ratings,
                               path)
  path = _write(tmp_path, "tags.csv", "userId,movieId,tag,timestamp\n1,2,x,3\n")
  message = _raises_at("tags.csv", 1, formats.read_csv_ratings, path)
  assert "userId,movieId,rating,timestamp" in message


# ------------------------------------------------------------- bad movies


def test_malformed_csv_movies(tmp_path):
  header = "movieId,title,genres\n"
  cases = [
      ("1,A (1999)\n", "expected 3 fields"),
      ("1,A,B,C\n", "expected 3 fields"),
      ("one,A (1999),Drama\n", "movie id 'one'"),
  ]
  for row, problem in cases:
    path = _write(tmp_path, "movies.csv", header + "7,Ok (1990),Drama\n" + row)
    assert problem in _raises_at("movies.csv", 3, formats.read_csv_movies,
                                 path)
  path = _write(tmp_path, "movies.csv", "id,name\n1,A\n")
  _raises_at("movies.csv", 1, formats.read_csv_movies, path)
  path = _write(tmp_path, "movies.csv", header)
  assert "no movies" in _raises_at("movies.csv", None,
                                   formats.read_csv_movies, path)


def test_csv_movies_must_be_utf8(tmp_path):
  path = _write(tmp_path, "movies.csv",
                b"movieId,title,genres\n1,A (1999),Drama\n2,Cit\xe9 (1995),"
                b"Drama\n")
  message = _raises_at("movies.csv", 3, formats.read_csv_movies, path)
  assert "UTF-8" in message


def test_duplicate_movie_id(tmp_path):
  path = _write(tmp_path, "movies.dat",
                "1::A (1990)::Drama\n2::B (1991)::Drama\n1::C (1992)::War\n")
  message = _raises_at("movies.dat", 3, formats.read_1m_movies, path)
  assert "line 1" in message  # Where it first appeared.


def test_malformed_1m_movies(tmp_path):
  path = _write(tmp_path, "movies.dat", "1::A (1990)::Drama\n2::B (1991)\n")
  _raises_at("movies.dat", 2, formats.read_1m_movies, path)


def test_malformed_100k_movies(tmp_path):
  good = "1|A (1995)|||url" + "|0" * 19
  path = _write(tmp_path, "u.item", good + "\n2|B (1995)|||url|0|1\n")
  assert "expected 24" in _raises_at("u.item", 2, formats.read_100k_movies,
                                     path)
  path = _write(tmp_path, "u.item",
                good + "\n" + "2|B (1995)|||url" + "|0" * 18 + "|2\n")
  assert "'Western'" in _raises_at("u.item", 2, formats.read_100k_movies,
                                   path)


def test_movie_index_with_huge_sparse_ids(tmp_path):
  # Ids too sparse for a lookup table take the binary-search path.
  movies = {features.MOVIE_ID: np.array([7, 5_000_000_000, 3], np.int64)}
  ratings = {features.MOVIE_ID: np.array([3, 5_000_000_000, 7, 3], np.int64)}
  csv = formats.FORMATS["csv"]
  index = formats.movie_index(ratings, movies, file_format=csv,
                              ratings_source=tmp_path / "unused.csv")
  assert index.tolist() == [2, 1, 0, 2]
  path = _write(tmp_path, "ratings.csv",
                "userId,movieId,rating,timestamp\n1,3,4.0,1\n1,4,4.0,2\n")
  ratings = {features.MOVIE_ID: np.array([3, 4], np.int64)}
  _raises_at("ratings.csv", 3, formats.movie_index, ratings, movies,
             file_format=csv, ratings_source=path)
