"""The check that a SavedModel runs on stock TF Serving: TensorFlow's own ops only."""

from __future__ import annotations

import os
from typing import Iterable, Optional

import tensorflow as tf


class NonStockOpError(ValueError):
  """A SavedModel uses ops that stock TensorFlow Serving does not have."""


def stock_op_names() -> frozenset[str]:
  """Ops every stock TensorFlow (Serving) build has: TensorFlow's own.

  `tf.raw_ops` lists TensorFlow's generated op wrappers and never ops that a
  library such as scann loads into the process, so the check below does not
  depend on what this process imported.
  """
  return frozenset(name for name in dir(tf.raw_ops) if name[0].isupper())


def saved_model_ops(path: str) -> set[str]:
  """Op types used by a SavedModel: its graphs and their function library."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  saved = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  ops = set()
  for meta_graph in saved.meta_graphs:
    graph = meta_graph.graph_def
    ops.update(node.op for node in graph.node)
    for function in graph.library.function:
      ops.update(node.op for node in function.node_def)
  return ops


def check_stock_ops(path: str,
                    allowed: Optional[Iterable[str]] = None) -> None:
  """Raises `NonStockOpError` naming the ops stock TF Serving lacks."""
  allowed = stock_op_names() if allowed is None else frozenset(allowed)
  foreign = sorted(saved_model_ops(path) - allowed)
  if foreign:
    raise NonStockOpError(
        f"{path} uses ops that stock TensorFlow Serving does not have: "
        f"{', '.join(foreign)}. Stock TF Serving would refuse to load it "
        "(Op type not registered).")
