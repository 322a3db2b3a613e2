"""TensorFlow's thread pools: the rule, and the runtime actually using it."""

import subprocess
import sys

from absl import logging
import pytest

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

from ncf_tfrs.training import threads


@pytest.mark.parametrize("cores, expected", [
    (1, (1, 1)), (2, (1, 2)), (3, (1, 2)), (16, (8, 2))])
def test_default_is_half_the_cores_per_op_and_two_ops_at_once(cores,
                                                              expected):
  assert threads.resolve(threads.ThreadConfig(), cores) == expected


def test_explicit_settings_and_tensorflows_default_pass_through():
  assert threads.resolve(threads.ThreadConfig(intra_op=0, inter_op=3),
                         cores=2) == (0, 3)
  with pytest.raises(ValueError, match="inter_op_threads"):
    threads.ThreadConfig(inter_op=-1)


@pytest.mark.parametrize("config, expected", [
    ("ThreadConfig()", "resolve(ThreadConfig())"),
    ("ThreadConfig(intra_op=3, inter_op=1)", "(3, 1)"),
])
def test_a_fresh_process_runs_with_the_configured_pools(config, expected):
  code = (
      "import ncf_tfrs, tensorflow as tf\n"
      "from ncf_tfrs.training.threads import *\n"
      f"got = configure({config})\n"
      "tf.constant(1.0) + 1.0  # The runtime starts with them.\n"
      f"assert got == current() == {expected}, (got, current())\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]


def test_a_running_runtime_keeps_its_pools_with_a_warning(monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.constant(1.0) + 1.0  # The test session's runtime is running.
  before = threads.current()
  warnings = []
  monkeypatch.setattr(logging, "warning",
                      lambda msg, *args: warnings.append(msg % args))
  assert threads.configure(threads.ThreadConfig(
      intra_op=before[0] + 5, inter_op=before[1] + 5)) == before
  assert len(warnings) == 1 and "keeps its thread pools" in warnings[0]
