"""Where the stock SavedModel runs: in process, or behind TF Serving.

Every backend has one `predict(signature, inputs)` call:

- `EmbeddedBackend`: the export loaded in this process;
- `RestBackend`: a TF Serving server's REST API (urllib + JSON);
- `GrpcBackend`: a TF Serving server's gRPC PredictionService
  (tensorflow-serving-api).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Mapping, Protocol

import numpy as np

from ncf_tfrs import cli


Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


class ServingError(cli.CommandError, RuntimeError):
  """The model server answered with an error."""


def _strings(values: np.ndarray) -> np.ndarray:
  """Any string array (bytes or str, any shape) as an array of str."""
  values = np.asarray(values)
  if values.dtype.kind in "OS":
    return np.vectorize(
        lambda v: v.decode() if isinstance(v, bytes) else str(v),
        otypes=[object])(values) if values.size else values.astype(object)
  return values


def _tensor_inputs(inputs: Inputs) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {name: tf.constant(value) for name, value in inputs.items()}


class Backend(Protocol):
  """Runs one signature of the stock SavedModel."""

  version: int

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    ...


class EmbeddedBackend:
  """The stock SavedModel, loaded in this process (no ScaNN op involved)."""

  def __init__(self, path: str) -> None:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.version = int(os.path.basename(os.path.normpath(path)))
    self._model = tf.saved_model.load(path)
    self._signatures = dict(self._model.signatures)

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    outputs = self._signatures[signature](**_tensor_inputs(inputs))
    return {name: _strings(value.numpy()) for name, value in outputs.items()}


def rest_body(signature: str, inputs: Inputs) -> dict:
  """A TF Serving REST predict body (columnar "inputs" format)."""
  return {"signature_name": signature,
          "inputs": {name: _strings(value).tolist()
                     for name, value in inputs.items()}}


def parse_rest_response(body: Mapping, signature: str) -> Outputs:
  """The named outputs of a REST predict response."""
  if "error" in body:
    raise ServingError(f"{signature}: {body['error']}")
  outputs = body.get("outputs")
  if not isinstance(outputs, dict):
    raise ServingError(f"{signature}: expected named outputs, got {body!r}"
                       [:500])
  return {name: np.asarray(value) for name, value in outputs.items()}


class RestBackend:
  """TF Serving's REST API: POST /v1/models/<name>/versions/<v>:predict."""

  def __init__(self, url: str, model_name: str, version: int,
               timeout_s: float = 10.0) -> None:
    self.version = version
    self._url = (f"{url.rstrip('/')}/v1/models/{model_name}/versions/"
                 f"{version}:predict")
    self._timeout_s = timeout_s

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    request = urllib.request.Request(
        self._url, data=json.dumps(rest_body(signature, inputs)).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
      with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
        body = json.loads(reply.read())
    except urllib.error.HTTPError as e:
      detail = e.read().decode(errors="replace")
      try:
        detail = json.loads(detail).get("error", detail)
      except ValueError:
        pass
      raise ServingError(f"{signature}: HTTP {e.code} from {self._url}: "
                         f"{detail}") from e
    return parse_rest_response(body, signature)


def predict_request(model_name: str, version: int, signature: str,
                    inputs: Inputs):
  """A tensorflow_serving PredictRequest for one signature call."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.version.value = version
  request.model_spec.signature_name = signature
  for name, value in inputs.items():
    value = np.asarray(value)
    if value.dtype.kind in "OU":
      value = value.astype(object)
      value = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v,
                           otypes=[object])(value) if value.size else value
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  return request


def parse_predict_response(response) -> Outputs:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {name: _strings(tf.make_ndarray(proto))
          for name, proto in response.outputs.items()}


class GrpcBackend:
  """TF Serving's gRPC PredictionService (needs tensorflow-serving-api)."""

  def __init__(self, target: str, model_name: str, version: int,
               timeout_s: float = 10.0) -> None:
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self.version = version
    self._model_name = model_name
    self._timeout_s = timeout_s
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target))

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    import grpc  # pylint: disable=g-import-not-at-top
    request = predict_request(self._model_name, self.version, signature, inputs)
    try:
      response = self._stub.Predict(request, timeout=self._timeout_s)
    except grpc.RpcError as e:
      raise ServingError(f"{signature}: {e.code()}: {e.details()}") from e
    return parse_predict_response(response)
