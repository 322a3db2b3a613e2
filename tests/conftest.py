"""Shared fixtures: a prepared synthetic-small dataset, made once per session."""

import os
import tempfile

import pytest

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import data as data_lib


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir holding synthetic-small and its movies."""
  path = str(tmp_path_factory.mktemp("tfds"))
  data_lib.prepare("synthetic-small", data_dir=path)
  return path


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory):
  """Temporary files of the code under test, and of the commands the tests
  run, go under pytest's own folder, which keeps only the last few runs:
  TFDS leaves an empty /tmp/tmp...tfds folder behind for each builder it
  constructs before the dataset is prepared, about a hundred per run."""
  path = str(tmp_path_factory.mktemp("tmp"))
  saved = os.environ.get("TMPDIR"), tempfile.tempdir
  os.environ["TMPDIR"], tempfile.tempdir = path, path
  yield
  if saved[0] is None:
    del os.environ["TMPDIR"]
  else:
    os.environ["TMPDIR"] = saved[0]
  tempfile.tempdir = saved[1]
