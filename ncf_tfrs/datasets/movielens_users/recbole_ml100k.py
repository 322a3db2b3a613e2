r"""Real ml-100k, rebuilt from the copy inside RecBole's wheel on PyPI.

MovieLens may not be redistributed: GroupLens's licence lets each user
download it from grouplens.org, and this repository ships none of it. On a
machine that cannot reach grouplens.org but can reach PyPI, the RecBole wheel
(`pip download recbole==1.2.1 --no-deps`) still carries ml-100k in RecBole's
atomic-file format: `ml-100k.inter` holds the 100,000 ratings of `u.data`, in
the same order, and `ml-100k.item` the titles (without the year), release
years and genres of `u.item`. This module reads those two members straight
from the wheel (no extraction) and writes them back in GroupLens's layout:

  <output_dir>/ml-100k/u.data   user \t item \t rating \t timestamp
  <output_dir>/ml-100k/u.item   id|title (year)|||| + 19 genre flags

so the offline path reads it unchanged:

  python -m ncf_tfrs.datasets.movielens_users.recbole_ml100k \
      --wheel /tmp/recbole/recbole-1.2.1-py3-none-any.whl --output_dir /tmp/ml100k
  python -m ncf_tfrs.train --flagfile configs/ml100k.flags \
      --manual_dir /tmp/ml100k --download=false

The release and video dates and the IMDb URL are not in the wheel; those
fields are left empty (no parser here reads them). Never commit the output:
it is MovieLens data, under GroupLens's licence.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Dict, List, Sequence, Tuple, Union

from absl import app
from absl import flags

from ncf_tfrs import cli
from ncf_tfrs.datasets.movielens_users import formats

PathLike = Union[str, os.PathLike]

INTER_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ITEM_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.item"
FOLDER = "ml-100k"

# Atomic-file columns read, by field name (the text before ':type').
_INTER_FIELDS = ("user_id", "item_id", "rating", "timestamp")
_ITEM_FIELDS = ("item_id", "movie_title", "release_year", "class")
# RecBole's ml-100k spells movie 267's title and year "unkonwn"; GroupLens's
# u.item calls it "unknown", with no year.
_MISSPELLED_UNKNOWN = "unkonwn"


class RecboleWheelError(formats.MovieLensFormatError):
  """The wheel, or one of its ml-100k members, is not what is expected.

  The message names the wheel, the member and, for a bad row, its 1-based
  line.
  """


@dataclasses.dataclass(frozen=True)
class Movie:
  """One movie of `ml-100k.item`, as u.item lays it out."""
  movie_id: int
  title: str  # With the year, as in u.item: "Toy Story (1995)".
  genres: Tuple[str, ...]  # Names of `formats.GENRES_100K`.


def read_member(wheel: PathLike, member: str) -> bytes:
  """Returns the bytes of one member of the wheel (a zip file).

  Raises:
    RecboleWheelError: the file is missing, not a zip, or lacks `member`.
  """
  name = os.fspath(wheel)
  try:
    with zipfile.ZipFile(name) as archive:
      try:
        return archive.read(member)
      except KeyError:
        raise RecboleWheelError(
            f"{name}: no member {member} (is this the recbole 1.2.1 wheel?)"
        ) from None
  except (zipfile.BadZipFile, OSError) as e:
    raise RecboleWheelError(f"{name}: not a readable wheel (zip): {e}") from e


def _rows(data: bytes, where: str, fields: Sequence[str]
         ) -> Tuple[List[Tuple[int, List[str]]], Dict[str, int]]:
  """Splits an atomic file into (line number, fields) and a column index.

  The header names each column 'name:type'; `fields` are found by name, so
  the column order does not matter.
  """
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise RecboleWheelError(f"{where}, line {line}: not UTF-8") from e
  lines = text.split("\n")
  header = [h.split(":", 1)[0] for h in lines[0].rstrip("\r").split("\t")]
  missing = [f for f in fields if f not in header]
  if missing:
    raise RecboleWheelError(
        f"{where}, line 1: header {lines[0]!r} lacks column(s) "
        f"{', '.join(missing)}")
  rows = []
  for number, line in enumerate(lines[1:], start=2):
    line = line.rstrip("\r")
    if not line:
      continue
    values = line.split("\t")
    if len(values) != len(header):
      raise RecboleWheelError(
          f"{where}, line {number}: expected {len(header)} tab-separated "
          f"fields, found {len(values)}: {line!r}")
    rows.append((number, values))
  if not rows:
    raise RecboleWheelError(f"{where}: no rows after the header")
  return rows, {f: header.index(f) for f in fields}


def _integer(value: str, field: str, where: str, line: int) -> int:
  """An integer field; RecBole types some as float, e.g. '881250949.0'."""
  try:
    return int(value)
  except ValueError:
    pass
  try:
    number = float(value)
    if number.is_integer():
      return int(number)
  except ValueError:
    pass
  raise RecboleWheelError(
      f"{where}, line {line}: {field} {value!r} is not an integer")


def parse_ratings(data: bytes, where: str
                 ) -> List[Tuple[int, int, int, int]]:
  """Parses `ml-100k.inter` into (user, item, rating, timestamp) rows.

  Args:
    data: the member's bytes.
    where: what errors call the member, e.g. 'wheel.whl:recbole/...inter'.

  Returns:
    The rows in file order.

  Raises:
    RecboleWheelError: a missing column, a malformed row, or a rating that
      is not 1-5 whole stars; naming the line.
  """
  rows, column = _rows(data, where, _INTER_FIELDS)
  out = []
  for line, values in rows:
    user, item, rating, timestamp = (
        _integer(values[column[f]], f, where, line) for f in _INTER_FIELDS)
    if not 1 <= rating <= 5:
      raise RecboleWheelError(
          f"{where}, line {line}: rating {rating} is not 1-5 stars")
    out.append((user, item, rating, timestamp))
  return out


def parse_movies(data: bytes, where: str) -> List[Movie]:
  """Parses `ml-100k.item` into movies with u.item's titles and genres.

  RecBole split u.item's title "Toy Story (1995)" into a title and the text
  of its last parentheses (the year, or e.g. 'V' for a video); they are
  joined back the same way.

  Raises:
    RecboleWheelError: a missing column, a malformed row, a genre not in
      `formats.GENRES_100K`, or a duplicate id; naming the line.
  """
  rows, column = _rows(data, where, _ITEM_FIELDS)
  movies, seen = [], {}
  for line, values in rows:
    movie_id = _integer(values[column["item_id"]], "item_id", where, line)
    if movie_id in seen:
      raise RecboleWheelError(
          f"{where}, line {line}: item_id {movie_id} already on line "
          f"{seen[movie_id]}")
    seen[movie_id] = line
    title = values[column["movie_title"]]
    year = values[column["release_year"]]
    if title == _MISSPELLED_UNKNOWN:
      title = "unknown"
    if year and year != _MISSPELLED_UNKNOWN:
      title = f"{title} ({year})"
    genres = tuple(values[column["class"]].split())
    unknown = [g for g in genres if g not in formats.GENRES_100K]
    if unknown:
      raise RecboleWheelError(
          f"{where}, line {line}: genre(s) {', '.join(unknown)} not among "
          f"ml-100k's {len(formats.GENRES_100K)}")
    if "|" in title:
      raise RecboleWheelError(
          f"{where}, line {line}: title {title!r} holds '|', u.item's "
          "separator")
    movies.append(Movie(movie_id, title, genres))
  return movies


def write_u_data(ratings: Sequence[Tuple[int, int, int, int]],
                 path: PathLike) -> None:
  """Writes ratings in u.data's layout: tab-separated, no header."""
  with open(path, "w", encoding="latin-1", newline="\n") as f:
    for row in ratings:
      f.write("\t".join(str(v) for v in row) + "\n")


def write_u_item(movies: Sequence[Movie], path: PathLike) -> None:
  """Writes movies in u.item's layout (latin-1, '|', 19 genre flags).

  Raises:
    RecboleWheelError: a title that latin-1 (u.item's encoding) cannot hold.
  """
  lines = []
  for movie in movies:
    flags_ = ["1" if g in movie.genres else "0" for g in formats.GENRES_100K]
    lines.append("|".join([str(movie.movie_id), movie.title, "", "", "",
                           *flags_]) + "\n")
  try:
    encoded = "".join(lines).encode("latin-1")
  except UnicodeEncodeError as e:
    raise RecboleWheelError(
        f"{os.fspath(path)}: a title is not latin-1: {e}") from e
  with open(path, "wb") as f:
    f.write(encoded)


def convert(wheel: PathLike, output_dir: PathLike) -> Dict[str, object]:
  """Writes `<output_dir>/ml-100k/u.data` and `u.item` from the wheel.

  Both members are read and checked before anything is written, and each
  file is written under a temporary name and renamed, so a failure leaves
  no half-written folder that the dataset builder would take as complete.

  Returns:
    The folder written and the numbers of ratings, users and movies.

  Raises:
    RecboleWheelError: see `read_member`, `parse_ratings`, `parse_movies`.
  """
  name = os.fspath(wheel)
  ratings = parse_ratings(read_member(wheel, INTER_MEMBER),
                          f"{name}:{INTER_MEMBER}")
  movies = parse_movies(read_member(wheel, ITEM_MEMBER),
                        f"{name}:{ITEM_MEMBER}")
  listed = {m.movie_id for m in movies}
  for number, (_, item, _, _) in enumerate(ratings, start=2):
    if item not in listed:
      raise RecboleWheelError(
          f"{name}:{INTER_MEMBER}, line {number}: item_id {item} is not in "
          f"{ITEM_MEMBER}")
  folder = os.path.join(os.fspath(output_dir), FOLDER)
  os.makedirs(folder, exist_ok=True)
  for filename, write, rows in (("u.item", write_u_item, movies),
                                ("u.data", write_u_data, ratings)):
    path = os.path.join(folder, filename)
    write(rows, path + ".tmp")
    os.replace(path + ".tmp", path)
  return {"folder": folder, "ratings": len(ratings),
          "users": len({r[0] for r in ratings}),
          "movies": len({r[1] for r in ratings}),
          "movies_listed": len(movies)}


_WHEEL = flags.DEFINE_string(
    "wheel", None, "Path to the RecBole wheel (recbole-1.2.1-py3-none-any.whl).")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None,
    "Folder to write ml-100k/ into: the --manual_dir of the train command.")
# Not flags.mark_flags_as_required: its validator would run on every parse of
# FLAGS in a process that imports this module (e.g. a test run of train.py).


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not _WHEEL.value or not _OUTPUT_DIR.value:
    raise app.UsageError("--wheel and --output_dir are required.")
  summary = convert(_WHEEL.value, _OUTPUT_DIR.value)
  print(f"Wrote {summary['folder']}/u.data ({summary['ratings']:,} ratings, "
        f"{summary['users']:,} users, {summary['movies']:,} movies) and "
        f"u.item ({summary['movies_listed']:,} movies). MovieLens data: do "
        "not commit or redistribute it.")
  return 0


if __name__ == "__main__":
  cli.run(main)
