"""Parsers for the MovieLens file formats.

GroupLens shipped its releases in three formats over the years, and this
module has one parser per file of each:

* 100k: `u.data` (ratings, tab-separated) and `u.item` (movies,
  pipe-separated, latin-1, genres as 19 0/1 flags).
* 1m: `ratings.dat` and `movies.dat`, '::'-separated, latin-1.
* csv (20m, 25m, 32m, latest-small): `ratings.csv` and `movies.csv`, with
  headers, UTF-8, quoted titles, '|'-separated genres.

The parsers are pure: a path (local or cloud, through `etils.epath`) or a
binary file object in, a dict of numpy arrays out, keyed by the feature names
of `ncf_tfrs.features`. They know nothing of TFDS, so they can be tested on a
few bytes and reused outside the dataset builder.

Ratings files are big (ml-32m's `ratings.csv` has 32 million rows), so they
are parsed with pandas' C engine and explicit dtypes. That parser says little
about where a bad row is, so when it fails the file is scanned again line by
line to name the first bad line; errors are rare, so only they pay for this.
Movies files are small (at most ~90k rows) and parsed in Python, which gives
exact line numbers for free.

Every problem with the input raises `MovieLensFormatError`, whose message
names the file and the 1-based line number (or the field) at fault.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import enum
import io
import os
from typing import (BinaryIO, Callable, Iterator, Mapping, Optional, Sequence,
                    Tuple, Union)

from etils import epath
import numpy as np
import pandas as pd
import tqdm

from ncf_tfrs import features

Source = Union[str, os.PathLike, BinaryIO]
Table = Mapping[str, np.ndarray]

# Genre flag columns of 100k's u.item, in file order.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy",
    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# What the csv releases write for a movie without genres.
NO_GENRES = "(no genres listed)"

CSV_RATINGS_HEADER = "userId,movieId,rating,timestamp"
CSV_MOVIES_HEADER = "movieId,title,genres"

_INT64_MAX = np.iinfo(np.int64).max
_RATING_COLUMNS = (features.USER_ID, features.MOVIE_ID, features.RATING,
                   features.TIMESTAMP)
_RATING_DTYPES = {
    features.USER_ID: np.int64,
    features.MOVIE_ID: np.int64,
    features.RATING: np.float32,
    features.TIMESTAMP: np.int64,
}


class MovieLensFormatError(ValueError):
  """The MovieLens input is not what its release should contain.

  The message names the file and the 1-based line (or the field) at fault,
  so a user can open the file and see the problem.
  """


class RatingScale(enum.Enum):
  """The values a release allows for a rating.

  A value off the scale means the file is corrupt or belongs to another
  release, and would silently skew any model trained on it.
  """

  WHOLE_STARS = "whole stars 1-5"
  HALF_STARS = "half stars 0.5-5"

  def invalid(self, ratings: np.ndarray) -> np.ndarray:
    """Returns a boolean mask of the ratings that are off this scale."""
    ratings = np.asarray(ratings, dtype=np.float64)
    # Count in steps of the scale: 1..5 stars, or 1..10 half stars.
    steps, most = (ratings, 5) if self is RatingScale.WHOLE_STARS else (
        2 * ratings, 10)
    with np.errstate(invalid="ignore"):
      return ~((steps == np.round(steps)) & (steps >= 1) & (steps <= most))


# ------------------------------------------------------------------ sources


class _Source:
  """A file to parse, opened as often as needed, named in error messages.

  Errors found after pandas has parsed a file need a second pass to find
  their line, so a source must be re-openable: a path, or a seekable binary
  file object, which is read from its start.
  """

  def __init__(self, source: Source, name: Optional[str] = None):
    self._source = source
    if isinstance(source, (str, os.PathLike)):
      self.name = name or os.fspath(source)
    else:
      self.name = name or str(getattr(source, "name", "<file object>"))

  @contextlib.contextmanager
  def open(self) -> Iterator[BinaryIO]:
    """Opens a path, or rewinds a file object to its start."""
    if isinstance(self._source, (str, os.PathLike)):
      with epath.Path(self._source).open("rb") as f:
        yield f
    else:
      self._source.seek(0)
      yield self._source

  def size(self) -> int:
    """The file's size in bytes."""
    if isinstance(self._source, (str, os.PathLike)):
      return epath.Path(self._source).stat().length
    return self._source.seek(0, io.SEEK_END)

  def error(self, message: str, line: Optional[int] = None
           ) -> MovieLensFormatError:
    where = f"{self.name}, line {line}" if line is not None else self.name
    return MovieLensFormatError(f"{where}: {message}")


def _lines(src: _Source, encoding: str) -> Iterator[Tuple[int, str]]:
  """Yields (1-based line number, text without line break) of a file."""
  with src.open() as f:
    text = io.TextIOWrapper(f, encoding=encoding, errors="replace",
                            newline="")
    try:
      for number, line in enumerate(text, start=1):
        yield number, line.rstrip("\r\n")
    finally:
      text.detach()  # Leaves the caller's file object open.


def _data_lines(src: _Source, encoding: str, header: bool
               ) -> Iterator[Tuple[int, str]]:
  """Like `_lines`, without the header and the blank lines pandas skips."""
  for number, line in _lines(src, encoding):
    if (header and number == 1) or not line:
      continue
    yield number, line


def _line_of_row(src: _Source, row: int, encoding: str, header: bool) -> int:
  """Returns the line number of the `row`-th (0-based) parsed data row."""
  for i, (number, _) in enumerate(_data_lines(src, encoding, header)):
    if i == row:
      return number
  raise AssertionError(f"{src.name} has no data row {row}.")


# ------------------------------------------------------------------ ratings


@dataclasses.dataclass(frozen=True)
class _RatingsLayout:
  """How one format lays a rating out on a line."""
  sep: str  # What pandas splits on.
  split: Callable[[str], Sequence[str]]  # The same split, in Python.
  header: Optional[str]
  encoding: str
  # Fields (as pandas splits) of user, movie, rating, timestamp, in order.
  usecols: Tuple[int, ...] = (0, 1, 2, 3)
  num_fields: int = 4  # Fields pandas sees on a line.


def _check_int(value: str, field: str) -> Optional[str]:
  try:
    number = int(value)
  except ValueError:
    return f"{field} {value!r} is not an integer"
  if not -_INT64_MAX <= number <= _INT64_MAX:
    return f"{field} {value!r} does not fit in 64 bits"
  return None


def _rating_line_problem(fields: Sequence[str]) -> Optional[str]:
  """Says what is wrong with the fields of one ratings line, if anything."""
  if len(fields) != 4:
    return (f"expected 4 fields (user id, movie id, rating, timestamp), "
            f"found {len(fields)}")
  for value, field in zip(fields, ("user id", "movie id")):
    if problem := _check_int(value, field):
      return problem
  try:
    rating = float(fields[2])
  except ValueError:
    return f"rating {fields[2]!r} is not a number"
  if not np.isfinite(rating):
    return f"rating {fields[2]!r} is not a number"
  return _check_int(fields[3], "timestamp")


def _read_ratings(src: _Source, layout: _RatingsLayout,
                  scale: RatingScale) -> Table:
  """Parses a ratings file with pandas, or says which line is wrong."""
  header = layout.header is not None
  if header:
    _check_header(src, layout.header, layout.encoding)
  names = [f"f{i}" for i in range(layout.num_fields)]
  # Not `usecols`: with it pandas ignores extra fields instead of raising.
  dtypes = {name: str for name in names}
  dtypes.update({names[i]: _RATING_DTYPES[c]
                 for i, c in zip(layout.usecols, _RATING_COLUMNS)})
  try:
    # ml-32m's ratings take pandas about 20 s: a bar shows the bytes read.
    size = src.size()
    with src.open() as f, tqdm.tqdm.wrapattr(
        f, "read", total=size, desc=f"Reading {src.name}",
        leave=False) as reading:
      frame = pd.read_csv(
          reading,
          sep=layout.sep,
          header=None,
          names=names,
          dtype=dtypes,
          skiprows=1 if header else 0,
          engine="c",
          na_filter=False,
          encoding=layout.encoding,
          low_memory=False,
      )
    # Fields between the kept ones (ml-1m's '::' split on ':') must be empty.
    for i in set(range(layout.num_fields)) - set(layout.usecols):
      if (frame[names[i]] != "").any():
        raise ValueError(f"unexpected text between separators in field {i}")
  except (ValueError, pd.errors.ParserError) as e:
    # pandas raises for a row it cannot split or convert; find it ourselves.
    for number, line in _data_lines(src, layout.encoding, header):
      if problem := _rating_line_problem(layout.split(line)):
        raise src.error(f"{problem}: {line!r}", number) from e
    raise src.error(f"could not parse the ratings: {e}") from e

  if not len(frame):
    raise src.error("the ratings file has no ratings")
  table = {c: frame[names[i]].to_numpy()
           for i, c in zip(layout.usecols, _RATING_COLUMNS)}

  bad = np.flatnonzero(scale.invalid(table[features.RATING]))
  if bad.size:
    row = int(bad[0])
    line = _line_of_row(src, row, layout.encoding, header)
    raise src.error(
        f"rating {table[features.RATING][row]:g} is not on this release's "
        f"scale ({scale.value}); {bad.size} rating(s) are off the scale",
        line)
  _check_no_duplicates(src, layout, table)
  return table


def _check_no_duplicates(src: _Source, layout: _RatingsLayout,
                         table: Table) -> None:
  """Rejects a second rating of the same (user, movie), naming both lines.

  MovieLens has none, and which of two ratings is true cannot be guessed;
  kept, both could land on both sides of a split.
  """
  user, movie = table[features.USER_ID], table[features.MOVIE_ID]
  if ((user[1:] > user[:-1]) |
      ((user[1:] == user[:-1]) & (movie[1:] > movie[:-1]))).all():
    return  # Ordered by (user, movie), as the csv releases are: no repeats.
  order = np.lexsort((movie, user))  # Stable: a pair's earlier row first.
  user_sorted, movie_sorted = user[order], movie[order]
  same = np.flatnonzero((user_sorted[1:] == user_sorted[:-1]) &
                        (movie_sorted[1:] == movie_sorted[:-1]))
  if not same.size:
    return
  pair = same[np.argmin(order[same + 1])]  # The first repeat in file order.
  first, second = int(order[pair]), int(order[pair + 1])
  header = layout.header is not None
  lines = [_line_of_row(src, row, layout.encoding, header)
           for row in (first, second)]
  count = same.size
  raise src.error(
      f"user {user[second]} rated movie {movie[second]} again (rating "
      f"{table[features.RATING][second]:g}; line {lines[0]} has "
      f"{table[features.RATING][first]:g}); {count} duplicate rating(s) of "
      "the same (user, movie). MovieLens has none: remove them, keeping the "
      "one you trust", lines[1])


def _check_header(src: _Source, expected: str, encoding: str) -> None:
  for _, line in _lines(src, encoding):
    line = line.lstrip("\ufeff")
    if line != expected:
      raise src.error(f"expected the header {expected!r}, found {line!r}", 1)
    return
  raise src.error("the file is empty")


_LAYOUT_100K = _RatingsLayout(sep="\t", split=lambda s: s.split("\t"),
                              header=None, encoding="latin-1")
# pandas only splits on a multi-character separator with its slow Python
# engine, so the C engine splits ml-1m's '::' on ':' and keeps every other
# field.
_LAYOUT_1M = _RatingsLayout(sep=":", split=lambda s: s.split("::"),
                            header=None, encoding="latin-1",
                            usecols=(0, 2, 4, 6), num_fields=7)
_LAYOUT_CSV = _RatingsLayout(sep=",", split=lambda s: s.split(","),
                             header=CSV_RATINGS_HEADER, encoding="utf-8")


def read_100k_ratings(source: Source, *,
                      scale: RatingScale = RatingScale.WHOLE_STARS,
                      name: Optional[str] = None) -> Table:
  """Parses ml-100k's `u.data`: 'user\\titem\\trating\\ttimestamp', no header.

  Args:
    source: path (local or cloud) or seekable binary file object (read
      from its start).
    scale: the ratings the release allows.
    name: what error messages call the file (default: its path).

  Returns:
    A dict of equally long arrays: `features.USER_ID` and `features.MOVIE_ID`
    (int64), `features.RATING` (float32), `features.TIMESTAMP` (int64), in
    file order.

  Raises:
    MovieLensFormatError: a malformed line, a rating off `scale`, or no
      ratings at all.
  """
  return _read_ratings(_Source(source, name), _LAYOUT_100K, scale)


def read_1m_ratings(source: Source, *,
                    scale: RatingScale = RatingScale.WHOLE_STARS,
                    name: Optional[str] = None) -> Table:
  """Parses ml-1m's `ratings.dat`: 'UserID::MovieID::Rating::Timestamp'.

  Args and returns as `read_100k_ratings`.

  Raises:
    MovieLensFormatError: as `read_100k_ratings`.
  """
  return _read_ratings(_Source(source, name), _LAYOUT_1M, scale)


def read_csv_ratings(source: Source, *,
                     scale: RatingScale = RatingScale.HALF_STARS,
                     name: Optional[str] = None) -> Table:
  """Parses `ratings.csv` of 20m/25m/32m/latest-small.

  The header must be 'userId,movieId,rating,timestamp': a different one
  means another file (e.g. tags.csv) was given.

  Args and returns as `read_100k_ratings`.

  Raises:
    MovieLensFormatError: as `read_100k_ratings`, or a wrong header.
  """
  return _read_ratings(_Source(source, name), _LAYOUT_CSV, scale)


# ------------------------------------------------------------------- movies


def _movies_table(src: _Source,
                  rows: Iterator[Tuple[int, int, str, Sequence[str]]]
                 ) -> Table:
  """Collects (line, id, title, genres) rows; rejects duplicate ids."""
  ids, titles, genres = [], [], []
  first_line = {}
  for line, movie_id, title, movie_genres in rows:
    if movie_id in first_line:
      raise src.error(
          f"movie id {movie_id} already appeared on line "
          f"{first_line[movie_id]}", line)
    first_line[movie_id] = line
    ids.append(movie_id)
    titles.append(title)
    genres.append(tuple(movie_genres))
  if not ids:
    raise src.error("the movies file has no movies")
  genre_array = np.empty(len(genres), dtype=object)
  genre_array[:] = genres
  return {
      features.MOVIE_ID: np.array(ids, dtype=np.int64),
      features.TITLE: np.array(titles, dtype=object),
      features.GENRES: genre_array,
  }


def _movie_id(src: _Source, value: str, line: int) -> int:
  if problem := _check_int(value, "movie id"):
    raise src.error(problem, line)
  return int(value)


def read_100k_movies(source: Source, *, name: Optional[str] = None) -> Table:
  """Parses ml-100k's `u.item` (latin-1).

  Lines are 'id|title|release date|video release date|IMDb URL|' and then 19
  0/1 flags, one per genre of `GENRES_100K`.

  Args:
    source: path (local or cloud) or seekable binary file object (read
      from its start).
    name: what error messages call the file (default: its path).

  Returns:
    A dict: `features.MOVIE_ID` (int64), `features.TITLE` (object array of
    str) and `features.GENRES` (object array of tuples of str), in file order.

  Raises:
    MovieLensFormatError: a malformed line, a duplicate movie id, or no
      movies at all.
  """
  src = _Source(source, name)
  num_fields = 5 + len(GENRES_100K)

  def rows():
    for line, text in _data_lines(src, "latin-1", header=False):
      fields = text.split("|")
      if len(fields) != num_fields:
        raise src.error(
            f"expected {num_fields} '|'-separated fields (id, title, 2 dates, "
            f"URL, {len(GENRES_100K)} genre flags), found {len(fields)}", line)
      flags = fields[5:]
      for genre, flag in zip(GENRES_100K, flags):
        if flag not in ("0", "1"):
          raise src.error(f"genre flag {genre!r} is {flag!r}, not 0 or 1",
                          line)
      yield (line, _movie_id(src, fields[0], line), fields[1],
             [g for g, f in zip(GENRES_100K, flags) if f == "1"])

  return _movies_table(src, rows())


def read_1m_movies(source: Source, *, name: Optional[str] = None) -> Table:
  """Parses ml-1m's `movies.dat`: 'MovieID::Title::Genres' (latin-1).

  Args and returns as `read_100k_movies`; genres are '|'-separated.

  Raises:
    MovieLensFormatError: as `read_100k_movies`.
  """
  src = _Source(source, name)

  def rows():
    for line, text in _data_lines(src, "latin-1", header=False):
      fields = text.split("::")
      if len(fields) != 3:
        raise src.error(
            f"expected 3 '::'-separated fields (id, title, genres), found "
            f"{len(fields)}", line)
      yield (line, _movie_id(src, fields[0], line), fields[1],
             [g for g in fields[2].split("|") if g])

  return _movies_table(src, rows())


def read_csv_movies(source: Source, *, name: Optional[str] = None) -> Table:
  """Parses `movies.csv` of 20m/25m/32m/latest-small (UTF-8).

  The header is 'movieId,title,genres'; titles may be quoted and hold
  commas; genres are '|'-separated, and "(no genres listed)" means none.

  Args and returns as `read_100k_movies`.

  Raises:
    MovieLensFormatError: as `read_100k_movies`, or a wrong header.
  """
  src = _Source(source, name)
  with src.open() as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise src.error(f"not UTF-8 ({e.reason})", line) from e
  _check_header(src, CSV_MOVIES_HEADER, "utf-8")

  def rows():
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)  # The header, checked above.
    line = 1
    try:
      for fields in reader:
        # A quoted title may span lines: a row starts after the last one.
        first, line = line + 1, reader.line_num
        if not fields:
          continue
        if len(fields) != 3:
          raise src.error(
              f"expected 3 fields (movieId, title, genres), found "
              f"{len(fields)}", first)
        genres = [] if fields[2] == NO_GENRES else [
            g for g in fields[2].split("|") if g]
        yield first, _movie_id(src, fields[0], first), fields[1], genres
    except csv.Error as e:
      raise src.error(f"malformed CSV: {e}", line + 1) from e

  return _movies_table(src, rows())


# ------------------------------------------------------------ file formats


@dataclasses.dataclass(frozen=True)
class FileFormat:
  """One of the MovieLens layouts: its file names and their parsers.

  Attributes:
    name: "100k", "1m" or "csv".
    ratings_file: name of the ratings file in the release's folder.
    movies_file: name of the movies file in the release's folder.
    read_ratings: the ratings parser (`read_*_ratings`).
    read_movies: the movies parser (`read_*_movies`).
  """
  name: str
  ratings_file: str
  movies_file: str
  read_ratings: Callable[..., Table]
  read_movies: Callable[..., Table]
  _layout: _RatingsLayout

  def ratings_line(self, source: Source, row: int,
                   name: Optional[str] = None) -> int:
    """Returns the line number of the `row`-th (0-based) rating in a file."""
    return _line_of_row(_Source(source, name), row, self._layout.encoding,
                        self._layout.header is not None)


FORMATS = {
    f.name: f for f in (
        FileFormat("100k", "u.data", "u.item", read_100k_ratings,
                   read_100k_movies, _LAYOUT_100K),
        FileFormat("1m", "ratings.dat", "movies.dat", read_1m_ratings,
                   read_1m_movies, _LAYOUT_1M),
        FileFormat("csv", "ratings.csv", "movies.csv", read_csv_ratings,
                   read_csv_movies, _LAYOUT_CSV),
    )
}


# --------------------------------------------------------------------- join


def movie_index(ratings: Table, movies: Table, *, file_format: FileFormat,
                ratings_source: Source, ratings_name: Optional[str] = None,
                movies_name: Optional[str] = None) -> np.ndarray:
  """Maps each rating to its movie's row in `movies`.

  A rating of a movie the movies file does not list means the two files do
  not belong together, so it is an error rather than a silent drop.

  Args:
    ratings: output of `file_format.read_ratings`.
    movies: output of `file_format.read_movies`.
    file_format: the format of the ratings file.
    ratings_source: the ratings file again, to find the line of a bad rating.
    ratings_name: what error messages call the ratings file.
    movies_name: what error messages call the movies file.

  Returns:
    int32 array: for each rating, the row of its movie in `movies`.

  Raises:
    MovieLensFormatError: a rating of a movie not in `movies`, naming the
      ratings file and line.
  """
  ids = movies[features.MOVIE_ID]
  rated = ratings[features.MOVIE_ID]
  if ids.min() >= 0 and ids.max() < max(16 * len(ids), 1 << 20):
    # MovieLens ids are small integers: a lookup table is ~50x faster than
    # a binary search over 32 million ratings.
    table = np.full(int(ids.max()) + 1, -1, dtype=np.int32)
    table[ids] = np.arange(len(ids), dtype=np.int32)
    in_range = (rated >= 0) & (rated < len(table))
    index = np.where(in_range, table[np.where(in_range, rated, 0)], -1)
  else:
    order = np.argsort(ids, kind="stable")
    position = np.minimum(np.searchsorted(ids[order], rated), len(ids) - 1)
    index = np.where(ids[order][position] == rated, order[position], -1)
  unknown = np.flatnonzero(index < 0)
  if unknown.size:
    src = _Source(ratings_source, ratings_name)
    row = int(unknown[0])
    line = file_format.ratings_line(ratings_source, row, src.name)
    raise src.error(
        f"movie id {rated[row]} is not in "
        f"{movies_name or file_format.movies_file}; {unknown.size} "
        "rating(s) are of unknown movies", line)
  return index.astype(np.int32, copy=False)
