"""Serving: ScaNN candidates then rerank, in process and against TF Serving's APIs."""

import concurrent.futures
import http.server
import json
import os
import re
import subprocess
import sys
import threading

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import pytest
import tensorflow as tf

from ncf_tfrs import export
from ncf_tfrs.serving import contract
from ncf_tfrs import serving
from ncf_tfrs.serving import backends

import export_helpers as helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  vocab = helpers.vocabulary()
  model = helpers.model(vocab)
  export_dir = str(tmp_path_factory.mktemp("export"))
  history = helpers.history(vocab, model)
  export.export_model(model, vocab, helpers.movies(), export_dir,
                      helpers.MODEL_NAME, export.ScannConfig(num_neighbors=50),
                      with_scann_model=False, history=history)
  recommender = serving.Recommender.load(export_dir, helpers.MODEL_NAME)
  return {"model": model, "dir": export_dir, "recommender": recommender,
          "history": history, "vocab": vocab}


def test_no_user_is_recommended_a_movie_they_rated(exported):
  recommender, history = exported["recommender"], exported["history"]
  users = [u.decode() for u in exported["vocab"].user_ids]
  for user, result in enumerate(recommender.recommend(users, k=10)):
    assert len(set(result.movie_ids)) == len(result.movie_ids)
    assert not set(result.movie_ids) & helpers.rated(history, user), user
    assert len(result.movie_ids) == (3 if user == 0 else 10)
  [u0] = recommender.recommend(["u0"], k=5)
  assert set(u0.movie_ids) == set(helpers.UNRATED_BY_U0)

  # include_seen gives back the re-watch list: u7's best are its rated ones.
  [rewatch] = recommender.recommend(["u7"], k=10, include_seen=True)
  assert len(rewatch.movie_ids) == 10
  assert set(rewatch.movie_ids) <= helpers.rated(history, 7)
  [u7] = recommender.recommend(["u7"], k=10)
  assert not set(u7.movie_ids) & helpers.rated(history, 7)


def test_known_user_gets_scann_candidates_in_the_served_order(exported):
  recommender, model = exported["recommender"], exported["model"]
  [result] = recommender.recommend(["u1"], k=10)
  assert not result.is_fallback and len(result.movie_ids) == 10
  assert result.titles[0] == f"Movie {result.movie_ids[0][1:]} (2000)"
  embedding = model.query_embeddings(tf.constant(["u1"])).numpy()
  candidates = recommender.catalog.movie_ids[
      recommender.catalog.search(embedding, 50)[0]]
  scores = model.rerank_scores(tf.constant(["u1"]),
                               tf.constant([candidates.astype(str)]))[0]
  order = np.argsort(-scores.numpy(), kind="stable")[:10]
  assert result.movie_ids == candidates[order].tolist()
  np.testing.assert_allclose(result.scores, scores.numpy()[order], rtol=1e-5)


def test_search_returns_full_lists_where_scann_leaves_run_short(tmp_path):
  # Near-uniform embeddings (an untrained model's): for some queries the
  # nearest leaves hold fewer than 200 movies, and ScaNN alone answers short.
  rng = np.random.default_rng(0)
  movies = rng.uniform(-0.05, 0.05, (1682, 32)).astype(np.float32)
  queries = rng.uniform(-0.05, 0.05, (200, 32)).astype(np.float32)
  config = export.ScannConfig(num_neighbors=200, min_tree_size=1000)
  searcher = export.build_scann_searcher(movies, config)
  os.makedirs(tmp_path / contract.SCANN_DIR)
  searcher.serialize(str(tmp_path / contract.SCANN_DIR), relative_path=True)
  with open(tmp_path / contract.MOVIES_FILE, "w") as f:
    f.write("movie_id\ttitle\tgenres\tcount\n")
    f.writelines(f"m{i}\t\t\t1\n" for i in range(len(movies)))
  with open(tmp_path / contract.MANIFEST_FILE, "w") as f:
    json.dump({"version": 1, "scann": config.resolve(len(movies))}, f)
  raw_rows, raw_scores = searcher.search_batched_parallel(
      queries, final_num_neighbors=200, pre_reorder_num_neighbors=800)
  short = np.isnan(raw_scores).any(axis=1)
  assert short.any()  # The case this test is about.

  catalog = serving.Catalog(str(tmp_path))
  batched = catalog.search(queries, 200)
  assert batched.shape == (200, 200)
  assert all(len(set(row)) == 200 for row in batched)
  np.testing.assert_array_equal(batched[~short], np.asarray(raw_rows)[~short])
  first = np.flatnonzero(short)[0]
  single = catalog.search(queries[first:first + 1], 200)
  np.testing.assert_array_equal(single[0], batched[first])


def test_seen_movies_are_left_out(exported):
  recommender = exported["recommender"]
  [first] = recommender.recommend(["u5"], k=10)
  [second] = recommender.recommend(["u5"], k=10, seen=[first.movie_ids[:5]])
  assert len(second.movie_ids) == 10
  assert not set(second.movie_ids) & set(first.movie_ids[:5])
  assert second.movie_ids[:5] == first.movie_ids[5:]


def test_unknown_user_is_flagged_and_gets_the_most_rated_unseen(exported):
  results = exported["recommender"].recommend(
      ["nobody", "u2"], k=4, seen=[["m0", "m2"], []])
  assert [r.is_fallback for r in results] == [True, False]
  assert results[0].movie_ids == ["m1", "m3", "m4", "m5"]
  assert results[0].titles[0] == "Movie 1 (2000)"
  # Alone: no known user to search for (ScaNN refuses an empty batch).
  [alone] = exported["recommender"].recommend(["nobody"], k=2)
  assert alone.is_fallback and alone.movie_ids == ["m0", "m1"]


def test_rerank_of_given_candidates(exported):
  recommender, model = exported["recommender"], exported["model"]
  movies = ["m10", "m20", "m30", "m40"]
  result = recommender.rerank("u3", movies, k=2)
  scores = model.rerank_scores(tf.constant(["u3"]), tf.constant([movies]))[0]
  assert result.movie_ids == [movies[i] for i in np.argsort(-scores)[:2]]
  with pytest.raises(ValueError, match="unknown-movie"):
    recommender.rerank("u3", ["m10", "unknown-movie"], k=1)


@pytest.mark.parametrize("call, field", [
    (lambda r: r.recommend([], 5), "user_ids"),
    (lambda r: r.recommend("u1", 5), "user_ids"),
    (lambda r: r.recommend([["u1"]], 5), "user_ids"),
    (lambda r: r.recommend([7], 5), "user_ids"),
    (lambda r: r.recommend(["u1"], 0), "k"),
    (lambda r: r.recommend(["u1"], helpers.NUM_MOVIES + 1), "k"),
    (lambda r: r.recommend(["u1"], 2.5), "k"),
    (lambda r: r.recommend(["u1", "u2"], 5, seen=[["m1"]]), "seen"),
    (lambda r: r.rerank("u1", ["m1", "m2"], 3), "k"),
    (lambda r: r.rerank("u1", [], 1), "movie_ids"),
])
def test_bad_input_is_a_value_error_naming_the_field(exported, call, field):
  with pytest.raises(ValueError, match=rf"^{field} "):
    call(exported["recommender"])


_REST_DTYPES = {"k": np.int32, "include_seen": bool,
                "history_rating": np.float32}


class _FakeTfServingRest(http.server.BaseHTTPRequestHandler):
  """Answers like TF Serving's REST predict API, from the real SavedModel."""

  backend = None  # Set per server.
  calls = []

  def do_POST(self):  # pylint: disable=invalid-name
    match = re.fullmatch(r"/v1/models/(\w+)/versions/(\d+):predict", self.path)
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    try:
      assert match and match.group(1) == helpers.MODEL_NAME, self.path
      signature = body["signature_name"]
      # TF Serving reads JSON by the signature's dtypes; ids are strings.
      inputs = {name: np.array(value, dtype=_REST_DTYPES.get(name, object))
                for name, value in body["inputs"].items()}
      self.calls.append(signature)
      outputs = self.backend.predict(signature, inputs)
      status, answer = 200, {"outputs": {n: v.tolist()
                                         for n, v in outputs.items()}}
    except Exception as e:  # pylint: disable=broad-except
      status, answer = 400, {"error": str(e)}
    data = json.dumps(answer).encode()
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, *args):
    pass


@pytest.fixture
def rest_server(exported):
  handler = type("Handler", (_FakeTfServingRest,), {
      "backend": exported["recommender"].backend, "calls": []})
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_port}", handler
  server.shutdown()
  server.server_close()


def test_rest_backend_answers_like_the_embedded_one(exported, rest_server):
  url, handler = rest_server
  embedded = exported["recommender"]
  remote = serving.Recommender(
      serving.RestBackend(url, helpers.MODEL_NAME, 1), embedded.catalog)
  users, seen = ["u1", "nobody", "u9"], [["m3"], [], []]
  assert remote.recommend(users, 5, seen) == embedded.recommend(users, 5, seen)
  assert handler.calls == ["user_embedding", "score"]
  history = [[("m1", 5.0)], [("m2", 4.5), ("m3", 1.0)], []]
  assert remote.recommend(users, 5, history=history) == (
      embedded.recommend(users, 5, history=history))
  assert handler.calls[2:] == ["user_embedding_history", "score_history"]
  with pytest.raises(serving.ServingError, match="k must be"):
    remote.backend.predict("retrieve", {"user_id": np.array(["u1"], object),
                                        "k": np.array(0, np.int32)})


def test_grpc_request_and_backend(exported):
  import grpc  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top

  request = backends.predict_request(
      helpers.MODEL_NAME, 1, "rerank",
      {"user_id": np.array(["u1"], dtype=object),
       "movie_id": np.array([["m1", "m2"]], dtype=object),
       "k": np.array(1, dtype=np.int32)})
  assert (request.model_spec.name, request.model_spec.version.value,
          request.model_spec.signature_name) == (helpers.MODEL_NAME, 1,
                                                 "rerank")
  assert request.inputs["user_id"].dtype == tf.string.as_datatype_enum
  assert request.inputs["movie_id"].string_val == [b"m1", b"m2"]
  assert [d.size for d in request.inputs["movie_id"].tensor_shape.dim] == [1, 2]
  assert request.inputs["k"].dtype == tf.int32.as_datatype_enum
  assert not request.inputs["k"].tensor_shape.dim

  embedded = exported["recommender"]

  class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):

    def Predict(self, request, context):  # pylint: disable=invalid-name
      inputs = {name: tf.make_ndarray(proto)
                for name, proto in request.inputs.items()}
      outputs = embedded.backend.predict(request.model_spec.signature_name,
                                         inputs)
      response = predict_pb2.PredictResponse()
      for name, value in outputs.items():
        if value.dtype == object:
          value = value.astype(bytes)
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
      return response

  server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      Servicer(), server)
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  try:
    remote = serving.Recommender(
        serving.GrpcBackend(f"127.0.0.1:{port}", helpers.MODEL_NAME, 1),
        embedded.catalog)
    users = ["u4", "nobody"]
    assert remote.recommend(users, 6) == embedded.recommend(users, 6)
    history = [[], [("m2", 4.5), ("m3", 1.0)]]
    assert remote.recommend(users, 6, history=history) == (
        embedded.recommend(users, 6, history=history))
  finally:
    server.stop(None)


def test_index_and_model_must_be_one_export(exported):
  embedded = exported["recommender"]
  with pytest.raises(ValueError, match="one export"):
    serving.Recommender(serving.RestBackend("http://127.0.0.1:1",
                                            helpers.MODEL_NAME, 2),
                        embedded.catalog)


def test_recommend_command_prints_titles(exported):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  run = subprocess.run(
      [sys.executable, "-m", "ncf_tfrs.recommend",
       f"--export_dir={exported['dir']}", f"--model_name={helpers.MODEL_NAME}",
       "--user_id=u1,nobody,u0", "--k=3"],
      capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
  assert run.returncode == 0, run.stderr[-2000:]
  lines = run.stdout.splitlines()
  assert lines[0] == "user u1" and lines[1].startswith("  1. Movie ")
  assert lines[4] == "user nobody (unknown user: most rated movies)"
  assert lines[5].startswith("  1. Movie 0 (2000)")
  # The most rated list shows no scores, which would not follow its order.
  assert "score" not in " ".join(lines[5:8]) and "score" in lines[1]
  # u0 rated all but three movies in training: those three, nothing else.
  assert lines[8] == "user u0"
  assert {line.split("[movie ")[1].split(",")[0] for line in lines[9:]} == {
      *helpers.UNRATED_BY_U0}
  assert contract.PADDING_ID == ""

  # --include_seen: u7's re-watch list, its best movies being rated ones.
  run = subprocess.run(
      [sys.executable, "-m", "ncf_tfrs.recommend",
       f"--export_dir={exported['dir']}", f"--model_name={helpers.MODEL_NAME}",
       "--user_id=u7", "--k=5", "--include_seen"],
      capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
  assert run.returncode == 0, run.stderr[-2000:]
  movies = {line.split("[movie ")[1].split(",")[0]
            for line in run.stdout.splitlines()[1:]}
  assert len(movies) == 5
  assert movies <= helpers.rated(exported["history"], 7)


def test_rated_file_round_trips_rows_with_large_and_empty_rows(tmp_path):
  # Differences above one byte, two bytes and three bytes; an empty row.
  row_splits = np.array([0, 3, 3, 5, 6], dtype=np.int64)
  movies = np.array([0, 70_000, 16_777_300, 5, 300, 2**31 - 1],
                    dtype=np.int64)
  path = str(tmp_path / contract.RATED_FILE)
  contract.write_rated(path, np.array([b"a", b"b", b"c", b"d"]), row_splits,
                       movies)
  user_ids, splits, again = contract.read_rated(path)
  assert list(user_ids) == [b"a", b"b", b"c", b"d"]
  np.testing.assert_array_equal(splits, row_splits)
  np.testing.assert_array_equal(again, movies)


def test_new_user_is_served_from_the_ratings_in_the_request(
    exported, monkeypatch):
  recommender, model = exported["recommender"], exported["model"]
  given = [("m1", 5.0), ("m5", 1.0)]
  new, known = recommender.recommend(["newbie", "u2"], k=10,
                                     history=[given, given])
  assert not new.is_fallback and len(new.movie_ids) == 10
  assert not {"m1", "m5"} & set(new.movie_ids + known.movie_ids)
  expected = model.history_rerank_scores(
      tf.constant([["m1", "m5"]]), tf.constant([[5.0, 1.0]]),
      tf.constant([new.movie_ids])).numpy()[0]
  np.testing.assert_allclose(new.scores, expected, rtol=1e-5)
  assert new.scores == sorted(new.scores, reverse=True)
  # A known user keeps its own list, less the movies in the request.
  [alone] = recommender.recommend(["u2"], k=12, seen=[["m1", "m5"]])
  assert known.movie_ids == alone.movie_ids[:10]
  with pytest.raises(ValueError, match="entry 1"):
    recommender.recommend(["newbie"], history=[[("m1", 5.0), ("m2", 9.0)]])
  monkeypatch.setitem(recommender.catalog.manifest, "history_side", False)
  with pytest.raises(ValueError, match="history_share"):
    recommender.recommend(["newbie"], history=[given])


def test_recommend_command_serves_a_new_user_from_history(exported):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
  command = [sys.executable, "-m", "ncf_tfrs.recommend",
             f"--export_dir={exported['dir']}",
             f"--model_name={helpers.MODEL_NAME}", "--user_id=newbie",
             "--k=3"]
  run = subprocess.run(command + ["--history=m1:5,m5:1.5"],
                       capture_output=True, text=True, env=env, timeout=900,
                       cwd=ROOT)
  assert run.returncode == 0, run.stderr[-2000:]
  lines = run.stdout.splitlines()
  assert lines[0] == "user newbie" and len(lines) == 4
  assert not {"m1", "m5"} & {line.split("[movie ")[1].split(",")[0]
                             for line in lines[1:]}
  run = subprocess.run(command + ["--history=m1:5,m5"], capture_output=True,
                       text=True, env=env, timeout=900, cwd=ROOT)
  assert run.returncode != 0
  assert "--history entry 'm5'" in run.stderr
