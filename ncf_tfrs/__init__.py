"""ncf_tfrs: MovieLens recommenders with TensorFlow Recommenders.

TFRS is built on Keras 2 (tf-keras). TensorFlow resolves `tf.keras` the first
time it is used, reading TF_USE_LEGACY_KERAS then, so this package sets the
variable on import and refuses to run if `tf.keras` already resolved to Keras 3
in this process (TensorFlow cannot switch it back).

It also hides TensorFlow's C++ INFO lines (CPU features, "Sharding callback
duration" at every export) unless TF_CPP_MIN_LOG_LEVEL is set: warnings and
errors still show.
"""

import os
import sys

__version__ = "0.1.0"


def _require_legacy_keras() -> None:
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return
  name = tf.keras.__name__
  if not name.startswith("tf_keras"):
    raise ImportError(
        f"ncf_tfrs needs Keras 2 (tf-keras), but tf.keras is already {name} "
        "(Keras 3) in this process. Import ncf_tfrs before using tf.keras, or "
        "set TF_USE_LEGACY_KERAS=1 in the environment.")


_require_legacy_keras()
