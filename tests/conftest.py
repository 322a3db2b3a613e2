"""Shared fixtures: a prepared synthetic-small dataset, made once per session."""

import pytest

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import data as data_lib


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir holding synthetic-small and its movies."""
  path = str(tmp_path_factory.mktemp("tfds"))
  data_lib.prepare("synthetic-small", data_dir=path)
  return path
