"""The exporter: what stock TF Serving gets, the ScaNN index, atomic versions."""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import pytest
import tensorflow as tf

from ncf_tfrs.training import config as config_lib
from ncf_tfrs import export
from ncf_tfrs.serving import contract
from ncf_tfrs.training import checkpoints
from ncf_tfrs import data as data_lib

import export_helpers as helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
           PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  vocab = helpers.vocabulary()
  model = helpers.model(vocab)
  export_dir = str(tmp_path_factory.mktemp("export"))
  history = helpers.history(vocab, model)
  path = export.export_model(model, vocab, helpers.movies(), export_dir,
                             helpers.MODEL_NAME,
                             export.ScannConfig(num_neighbors=100,
                                                min_tree_size=1000),
                             history=history)
  return {"model": model, "vocab": vocab, "dir": export_dir, "path": path,
          "loaded": tf.saved_model.load(path), "history": history}


def test_retrieve_and_rerank_leave_each_users_rated_movies_out(exported):
  history, vocab = exported["history"], exported["vocab"]
  signatures = exported["loaded"].signatures
  out = signatures["retrieve"](user_id=tf.constant(vocab.user_ids),
                               k=tf.constant(10))
  for user, row in enumerate(out["movie_id"].numpy()):
    movies = [m.decode() for m in row if m]
    assert len(set(movies)) == len(movies)
    assert not set(movies) & helpers.rated(history, user), user
    # u0 rated all but three: exactly those three, then padding.
    assert len(movies) == (3 if user == 0 else 10)
  assert set(m.decode() for m in out["movie_id"][0][:3].numpy()) == set(
      helpers.UNRATED_BY_U0)
  assert (out["score"][0][3:].numpy() == contract.MASKED_SCORE).all()

  rated = sorted(helpers.rated(history, 7))
  candidates = [rated[0], "m1", "m1", rated[1], "m2", "m1", "m3"]
  out = signatures["rerank"](user_id=tf.constant(["u7"]),
                             movie_id=tf.constant([candidates]),
                             k=tf.constant(5))
  movies = [m.decode() for m in out["movie_id"][0].numpy()]
  assert sorted(movies[:3]) == ["m1", "m2", "m3"] and movies[3:] == ["", ""]


def test_filtered_signatures_leave_out_the_requests_seen_or_keep_history(
    exported):
  history, vocab = exported["history"], exported["vocab"]
  signatures = exported["loaded"].signatures
  users = tf.constant(["u7", "u3", "nobody"])
  plain = signatures["retrieve"](user_id=users, k=tf.constant(5))
  # The request's seen: two of each user's plain top 5, one unknown id,
  # padding; the unknown user loses two popular movies too.
  seen = [[row[0].decode(), row[2].decode(), "no-such-movie", ""]
          for row in plain["movie_id"].numpy()]
  out = signatures["retrieve_filtered"](
      user_id=users, k=tf.constant(5), seen=tf.constant(seen),
      include_seen=tf.constant(False))
  for row, before, left_out in zip(out["movie_id"].numpy(),
                                   plain["movie_id"].numpy(), seen):
    movies = [m.decode() for m in row]
    assert not set(movies) & set(left_out)
    assert movies[:3] == [before[1].decode()] + [
        m.decode() for m in before[3:]]  # The rest move up, in order.
  assert out["is_fallback"].numpy().tolist() == [False, False, True]
  popular = [m.decode() for m in vocab.movie_ids[:7]]
  assert [m.decode() for m in out["movie_id"][2].numpy()] == [
      m for m in popular if m not in seen[2]]

  # include_seen: u7's 20 rated movies, its best retrieval scores, come
  # back; nothing seen and no history is the plain retrieval of the model.
  rated = helpers.rated(history, 7)
  rewatch = signatures["retrieve_filtered"](
      user_id=tf.constant(["u7"]), k=tf.constant(20),
      seen=tf.constant([[""]]), include_seen=tf.constant(True))
  assert {m.decode() for m in rewatch["movie_id"][0].numpy()} == rated

  candidates = tf.constant([sorted(rated)[:2] + ["m1", "m2", "m3"]])
  for include_seen, expected in ((False, {"m1", "m3"}),
                                 (True, set(sorted(rated)[:2]) | {"m1", "m3"})):
    out = signatures["rerank_filtered"](
        user_id=tf.constant(["u7"]), movie_id=candidates, k=tf.constant(5),
        seen=tf.constant([["m2"]]), include_seen=tf.constant(include_seen))
    assert {m.decode() for m in out["movie_id"][0].numpy() if m} == expected
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"seen \[B, S\] must have the same number of rows"):
    signatures["retrieve_filtered"](
        user_id=users, k=tf.constant(5), seen=tf.constant([["m1"]]),
        include_seen=tf.constant(False))


def test_export_layout(exported):
  root = exported["dir"]
  assert exported["path"] == os.path.join(root, helpers.MODEL_NAME, "1")
  for suffix in ("", contract.INDEX_SUFFIX, contract.SCANN_MODEL_SUFFIX):
    assert os.listdir(os.path.join(root, helpers.MODEL_NAME + suffix)) == ["1"]
  index = os.path.join(root, helpers.MODEL_NAME + contract.INDEX_SUFFIX, "1")
  with open(os.path.join(index, contract.MOVIES_FILE)) as f:
    lines = f.read().splitlines()
  assert lines[0] == "movie_id\ttitle\tgenres\tcount"
  assert lines[1] == "m0\tMovie 0 (2000)\tDrama|Comedy\t9000"
  assert len(lines) == helpers.NUM_MOVIES + 1


def test_stock_model_answers_in_a_process_without_scann(exported):
  script = textwrap.dedent(f"""
      import json, sys
      import tensorflow as tf
      loaded = tf.saved_model.load({exported['path']!r})
      out = loaded.signatures["retrieve"](
          user_id=tf.constant(["u3", "stranger"]), k=tf.constant(5))
      print(json.dumps({{
          "scann_imported": any(m.startswith("scann") for m in sys.modules),
          "movie_id": out["movie_id"].numpy().astype(str).tolist(),
          "is_fallback": out["is_fallback"].numpy().tolist()}}))
  """)
  run = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, env=ENV, timeout=900, check=True)
  answer = json.loads(run.stdout.splitlines()[-1])
  assert not answer["scann_imported"]
  assert answer["is_fallback"] == [False, True]
  assert answer["movie_id"][1] == ["m0", "m1", "m2", "m3", "m4"]
  assert not [op for op in export.saved_model_ops(exported["path"])
              if "scann" in op.lower()]


SIGNATURES = {
    "user_embedding": ({"user_id": (tf.string, [None])},
                       {"embedding": (tf.float32, [None, helpers.DIM]),
                        "is_fallback": (tf.bool, [None])}),
    "score": ({"user_id": (tf.string, [None]),
               "movie_id": (tf.string, [None, None])},
              {"score": (tf.float32, [None, None]),
               "ncf_logit": (tf.float32, [None, None]),
               "liked_prob": (tf.float32, [None, None]),
               "is_known_movie": (tf.bool, [None, None])}),
    "rerank": ({"user_id": (tf.string, [None]),
                "movie_id": (tf.string, [None, None]), "k": (tf.int32, [])},
               {"movie_id": (tf.string, [None, None]),
                "score": (tf.float32, [None, None]),
                "is_fallback": (tf.bool, [None])}),
    "retrieve": ({"user_id": (tf.string, [None]), "k": (tf.int32, [])},
                 {"movie_id": (tf.string, [None, None]),
                  "score": (tf.float32, [None, None]),
                  "is_fallback": (tf.bool, [None])}),
}
SIGNATURES["serving_default"] = SIGNATURES["retrieve"]
for _name in ("rerank", "retrieve"):
  SIGNATURES[f"{_name}_filtered"] = (
      {**SIGNATURES[_name][0], "seen": (tf.string, [None, None]),
       "include_seen": (tf.bool, [])}, SIGNATURES[_name][1])
for _name in ("user_embedding", "score", "rerank", "retrieve"):
  SIGNATURES[f"{_name}_history"] = (
      {**SIGNATURES[_name][0], "history_movie_id": (tf.string, [None, None]),
       "history_rating": (tf.float32, [None, None])}, SIGNATURES[_name][1])


def test_signatures_have_documented_names_dtypes_and_shapes(exported):
  signatures = exported["loaded"].signatures
  assert set(signatures) == set(SIGNATURES)
  for name, (inputs, outputs) in SIGNATURES.items():
    function = signatures[name]
    got_inputs = function.structured_input_signature[1]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in got_inputs.items()
            } == inputs, name
    got_outputs = function.structured_outputs
    assert {k: (v.dtype, v.shape.as_list()) for k, v in got_outputs.items()
            } == outputs, name


def test_rerank_follows_the_models_served_order(exported):
  model, rerank = exported["model"], exported["loaded"].signatures["rerank"]
  users = tf.constant(["u1", "u7"])
  movies = tf.constant([[f"m{i}" for i in range(0, 60, 3)],
                        [f"m{i}" for i in range(100, 120)]])
  expected = model.rerank_scores(users, movies).numpy()
  out = rerank(user_id=users, movie_id=movies, k=tf.constant(7))
  for row in range(2):
    order = np.argsort(-expected[row], kind="stable")[:7]
    assert out["movie_id"][row].numpy().tolist() == (
        movies[row].numpy()[order].tolist())
    np.testing.assert_allclose(out["score"][row], expected[row][order],
                               rtol=1e-5)
  scores = exported["loaded"].signatures["score"](user_id=users,
                                                  movie_id=movies)
  np.testing.assert_allclose(scores["score"], expected, rtol=1e-5)


@pytest.mark.parametrize("signature", ["score", "rerank"])
def test_mismatched_rows_name_the_inputs(exported, signature):
  inputs = {"user_id": tf.constant(["u1", "u2", "u3"]),
            "movie_id": tf.constant([["m1", "m2"], ["m3", "m4"]])}
  if signature == "rerank":
    inputs["k"] = tf.constant(1)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"user_id \[B\] and movie_id \[B, C\] must have "
                     "the same number of rows"):
    exported["loaded"].signatures[signature](**inputs)


def test_unknown_user_is_flagged_and_gets_the_popularity_list(exported):
  signatures = exported["loaded"].signatures
  out = signatures["retrieve"](user_id=tf.constant(["u2", "nobody"]),
                               k=tf.constant(10))
  assert out["is_fallback"].numpy().tolist() == [False, True]
  popular = exported["vocab"].movie_ids[:10].tolist()
  assert out["movie_id"][1].numpy().tolist() == popular
  assert out["movie_id"][0].numpy().tolist() != popular
  # A known user's exact retrieval is the catalog's top 10 by dot product.
  model = exported["model"]
  scores = (model.query_embeddings(tf.constant(["u2"])).numpy() @
            model.candidate_embeddings(tf.constant(
                exported["vocab"].movie_ids)).numpy().T)[0]
  assert out["movie_id"][0].numpy().tolist() == (
      exported["vocab"].movie_ids[np.argsort(-scores)[:10]].tolist())
  # Reranking an unknown user's candidates orders them by popularity.
  out = signatures["rerank"](
      user_id=tf.constant(["nobody"]),
      movie_id=tf.constant([["m9", "m2", "m5", "unknown-movie", ""]]),
      k=tf.constant(5))
  assert out["is_fallback"].numpy().tolist() == [True]
  # Unknown movies and padding come last, masked, as padding ids.
  assert out["movie_id"][0].numpy().tolist() == [b"m2", b"m5", b"m9", b"", b""]
  assert (out["score"][0][3:].numpy() == contract.MASKED_SCORE).all()


def test_bad_k_is_refused_with_a_message(exported):
  signatures = exported["loaded"].signatures
  for k in (0, helpers.NUM_MOVIES + 1):
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be"):
      signatures["retrieve"](user_id=tf.constant(["u1"]), k=tf.constant(k))
  with pytest.raises(tf.errors.InvalidArgumentError, match="k must be"):
    signatures["rerank"](user_id=tf.constant(["u1"]),
                         movie_id=tf.constant([["m1", "m2"]]),
                         k=tf.constant(3))


def test_scann_index_matches_exact_search(exported):
  from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
  index = os.path.join(exported["dir"],
                       helpers.MODEL_NAME + contract.INDEX_SUFFIX, "1")
  searcher = scann_ops_pybind.load_searcher(os.path.join(index,
                                                         contract.SCANN_DIR))
  with open(os.path.join(index, contract.MANIFEST_FILE)) as f:
    manifest = json.load(f)
  assert manifest["scann"]["num_leaves"] == round(np.sqrt(helpers.NUM_MOVIES))
  model, vocab = exported["model"], exported["vocab"]
  catalog = model.candidate_embeddings(tf.constant(vocab.movie_ids)).numpy()
  rng = np.random.default_rng(1)
  queries = catalog[rng.choice(len(catalog), 200)] + 0.3 * rng.normal(
      size=(200, helpers.DIM)).astype(np.float32)
  found, _ = searcher.search_batched(queries, final_num_neighbors=100)
  exact = np.argsort(-(queries @ catalog.T), axis=1)[:, :100]
  recall = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(found, exact)])
  assert recall >= 0.95, f"recall@100 {recall:.3f}, settings {manifest}"


def test_scann_module_marks_short_searches_as_padding_not_movie_0():
  # An untrained model's near-uniform embeddings: the leaves nearest some
  # users hold fewer than 500 movies, and ScaNN pads those rows.
  vocab = helpers.vocabulary()
  model = helpers.model(vocab)
  rng = np.random.default_rng(0)
  for tower, rows in ((model.candidate_tower, helpers.NUM_MOVIES + 1),
                      (model.query_tower, helpers.NUM_USERS + 1)):
    tower.embedding.set_weights(
        [rng.uniform(-0.05, 0.05, (rows, helpers.DIM)).astype(np.float32)])
  settings = export.ScannConfig(num_neighbors=500, min_tree_size=1000).resolve(
      helpers.NUM_MOVIES)
  module = export.ScannServingModule(model, vocab, settings)
  users = tf.constant(vocab.user_ids)
  out = module.scann_retrieve(users)
  ids, scores = out["movie_id"].numpy(), out["score"].numpy()
  padded = ids == contract.PADDING_ID.encode()
  assert padded.any()  # The case this test is about.
  assert not np.isnan(scores).any()
  assert (scores[padded] == contract.MASKED_SCORE).all()
  for row, pad in zip(ids, padded):
    assert len(set(row[~pad])) == (~pad).sum()  # No movie twice.
  top = module.recommend(users, tf.constant(10))["movie_id"].numpy()
  assert not (top == contract.PADDING_ID.encode()).any()
  assert all(len(set(row)) == 10 for row in top)


def test_exporter_refuses_non_stock_ops_naming_them(exported):
  scann_model = os.path.join(exported["dir"],
                             helpers.MODEL_NAME + contract.SCANN_MODEL_SUFFIX,
                             "1")
  with pytest.raises(export.NonStockOpError,
                     match=r"Scann>ScannSearchBatched"):
    export.check_stock_ops(scann_model)
  export.check_stock_ops(exported["path"])  # The stock one passes.
  # The ScaNN variant works in a process that has the ScaNN ops.
  loaded = tf.saved_model.load(scann_model)
  out = loaded.signatures["recommend"](user_id=tf.constant(["u4", "nobody"]),
                                       k=tf.constant(5))
  assert out["movie_id"].shape == (2, 5)
  assert out["is_fallback"].numpy().tolist() == [False, True]


def test_scann_recommend_leaves_rated_movies_out_even_for_heavy_users(
    exported):
  # u0 rated 2,997 of 3,000 movies, far more than the 100 candidates and
  # the leaves searched by default: it still gets its three unrated ones.
  history, vocab = exported["history"], exported["vocab"]
  loaded = tf.saved_model.load(os.path.join(
      exported["dir"], helpers.MODEL_NAME + contract.SCANN_MODEL_SUFFIX, "1"))
  out = loaded.signatures["recommend"](user_id=tf.constant(vocab.user_ids),
                                       k=tf.constant(10))
  for user, row in enumerate(out["movie_id"].numpy()):
    movies = [m.decode() for m in row if m]
    assert len(set(movies)) == len(movies)
    assert not set(movies) & helpers.rated(history, user), user
    assert len(movies) == (3 if user == 0 else 10), user
  assert set(m.decode() for m in out["movie_id"][0][:3].numpy()) == set(
      helpers.UNRATED_BY_U0)


def test_scann_recommend_history_serves_users_from_their_ratings(exported):
  loaded = tf.saved_model.load(os.path.join(
      exported["dir"], helpers.MODEL_NAME + contract.SCANN_MODEL_SUFFIX, "1"))
  stock = exported["loaded"].signatures
  users = tf.constant(["newbie", "u7", "nobody"])
  given = tf.constant([["m1", "m5", ""], ["m1", "", ""],
                       ["unknown", "", ""]])
  stars = tf.constant([[5.0, 1.0, 0.0], [4.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
  out = loaded.signatures["recommend_history"](
      user_id=users, history_movie_id=given, history_rating=stars,
      k=tf.constant(10))
  assert out["is_fallback"].numpy().tolist() == [False, False, True]
  lists = [[m.decode() for m in row] for row in out["movie_id"].numpy()]
  assert all(len(set(row)) == 10 and "" not in row for row in lists)
  assert not {"m1", "m5"} & set(lists[0])
  assert "m1" not in lists[1]
  assert not set(lists[1]) & helpers.rated(exported["history"], 7)
  assert lists[2] == [f"m{i}" for i in range(10)]  # Nothing known: most rated.
  # The new user's list is in the served order of its history's rows, and
  # is (nearly: ScaNN is approximate) the exact search's served top 10.
  scored = stock["score_history"](
      user_id=users[:1], history_movie_id=given[:1], history_rating=stars[:1],
      movie_id=out["movie_id"][:1])["score"][0].numpy()
  np.testing.assert_allclose(out["score"][0].numpy(), scored, rtol=1e-5)
  assert (np.diff(scored) <= 1e-6).all()
  candidates = stock["retrieve_history"](
      user_id=users[:1], history_movie_id=given[:1], history_rating=stars[:1],
      k=tf.constant(100))["movie_id"]
  exact = stock["rerank_history"](
      user_id=users[:1], history_movie_id=given[:1], history_rating=stars[:1],
      movie_id=candidates, k=tf.constant(10))["movie_id"][0].numpy()
  assert len({m.decode() for m in exact} & set(lists[0])) >= 8


def test_failed_write_publishes_nothing(tmp_path):
  root = str(tmp_path / "model")

  def fail(path):
    os.makedirs(path)
    with open(os.path.join(path, "half"), "w") as f:
      f.write("x")
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    export.publish_version(root, 1, fail)
  assert os.listdir(root) == []
  assert contract.versions(root) == []


def test_export_refused_before_publishing_leaves_versions_untouched(
    exported, tmp_path, monkeypatch):
  vocab = exported["vocab"]

  def refuse(path, allowed=None):
    raise export.NonStockOpError(f"{path} uses ops ...: FancyOp")

  monkeypatch.setattr(export.stock_ops, "check_stock_ops", refuse)
  with pytest.raises(export.NonStockOpError, match="FancyOp"):
    export.export_model(exported["model"], vocab, None, str(tmp_path), "m",
                        with_scann_model=False)
  assert contract.versions(str(tmp_path / "m")) == []
  assert not glob.glob(str(tmp_path / "m" / ".*"))
  # The index of the refused version stays, unserved; the next export skips
  # its number.
  assert export.next_version(str(tmp_path), "m") == 2


def test_killed_export_leaves_no_partial_version(tmp_path):
  root = str(tmp_path / "model")
  os.makedirs(os.path.join(root, "3"))
  script = textwrap.dedent(f"""
      import os, time
      from ncf_tfrs import export
      def write(path):
        os.makedirs(path)
        open(os.path.join(path, "saved_model.pb"), "w").write("half")
        time.sleep(3600)
      export.publish_version({root!r}, 4, write)
  """)
  child = subprocess.Popen([sys.executable, "-c", script], env=ENV,
                           stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 600  # A hang detector: ~3 s when quiet.
    while not glob.glob(os.path.join(root, ".tmp-4-*", "saved_model.pb")):
      assert time.time() < deadline and child.poll() is None
      time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
  finally:
    if child.poll() is None:
      child.kill()
  assert contract.versions(root) == [3]
  assert export.next_version(str(tmp_path), "model") == 4
  export.publish_version(root, 4, os.makedirs)
  assert contract.versions(root) == [3, 4]
  assert not glob.glob(os.path.join(root, ".*"))  # The abandoned temp too.


def test_abandoned_temp_is_removed_even_when_its_pid_is_reused(tmp_path):
  import fcntl  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / "model")
  # A killed exporter's folder, named after a pid that is alive again (1).
  os.makedirs(os.path.join(root, ".tmp-7-1"))
  # A live exporter: it holds the lock beside its folder.
  live = os.path.join(root, f".tmp-8-{os.getpid()}")
  os.makedirs(live)
  with open(live + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    export.publish_version(root, 9, os.makedirs)
    assert sorted(os.listdir(root)) == [
        ".tmp-8-" + str(os.getpid()), ".tmp-8-" + str(os.getpid()) + ".lock",
        "9"]


def test_models_config_and_requests_are_valid(exported):
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.config import model_server_config_pb2  # pylint: disable=g-import-not-at-top
  with open(os.path.join(exported["dir"], contract.MODELS_CONFIG)) as f:
    config = text_format.Parse(f.read(),
                               model_server_config_pb2.ModelServerConfig())
  models = config.model_config_list.config
  assert [(m.name, m.base_path, m.model_platform) for m in models] == [
      (helpers.MODEL_NAME, f"/models/{helpers.MODEL_NAME}", "tensorflow")]
  signatures = exported["loaded"].signatures
  requests = glob.glob(os.path.join(exported["dir"], contract.REQUESTS_DIR,
                                    "*.json"))
  assert len(requests) == 6  # retrieve_history: the model has a history side.
  for path in requests:
    with open(path) as f:
      body = json.load(f)
    function = signatures[body["signature_name"]]
    inputs = {name: tf.constant(value, dtype=function.structured_input_signature
                                [1][name].dtype)
              for name, value in body["inputs"].items()}
    function(**inputs)  # Answers without error.


def test_model_dir_round_trip(exported, tmp_path):
  """What `python -m ncf_tfrs.export` rebuilds equals what train.py saved."""
  model, vocab = exported["model"], exported["vocab"]
  cfg = config_lib.ExperimentConfig(model=helpers.CONFIG)
  (tmp_path / "config.json").write_text(cfg.to_json())
  vocab.save(str(tmp_path / "vocabulary"))
  model.save_weights(str(tmp_path / "checkpoints" / "epoch-001"))
  rebuilt, rebuilt_vocab, rebuilt_cfg = checkpoints.load_trained(str(tmp_path))
  assert rebuilt_cfg == cfg
  assert isinstance(rebuilt_vocab, data_lib.Vocabulary)
  users, movies = tf.constant(["u1", "u2"]), tf.constant([["m1", "m2"]] * 2)
  np.testing.assert_allclose(rebuilt.rerank_scores(users, movies),
                             model.rerank_scores(users, movies), rtol=1e-6)


def test_history_signatures_serve_new_users_from_their_ratings(exported):
  model, signatures = exported["model"], exported["loaded"].signatures
  users = tf.constant(["newbie", "u7", "nobody"])
  # "" pads; "unknown" is no catalog movie, so "nobody" brings nothing.
  given = tf.constant([["m1", "m5", ""], ["m1", "", ""],
                       ["unknown", "", ""]])
  stars = tf.constant([[5.0, 1.0, 0.0], [4.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
  out = signatures["retrieve_history"](
      user_id=users, history_movie_id=given, history_rating=stars,
      k=tf.constant(10))
  assert out["is_fallback"].numpy().tolist() == [False, False, True]
  catalog = model.candidate_embeddings(
      tf.constant(exported["vocab"].movie_ids)).numpy()
  query = model.history_query_embeddings(given[:1], stars[:1]).numpy()[0]
  scores = catalog @ query
  scores[[1, 5]] = -np.inf  # The request's own movies are left out.
  assert [m.decode() for m in out["movie_id"][0].numpy()] == [
      f"m{i}" for i in np.argsort(-scores)[:10]]
  # u7 is known: its own list, less the request's movie m1 and its rated.
  own = signatures["retrieve_filtered"](
      user_id=users[1:2], k=tf.constant(10), seen=given[1:2, :1],
      include_seen=tf.constant(False))
  assert out["movie_id"][1].numpy().tolist() == (
      own["movie_id"][0].numpy().tolist())
  # Nothing known in the request: the most rated movies.
  assert out["movie_id"][2].numpy().tolist() == [
      f"m{i}".encode() for i in range(10)]

  candidates = tf.constant([[f"m{i}" for i in range(20, 40)]] * 3)
  scored = signatures["score_history"](
      user_id=users, history_movie_id=given, history_rating=stars,
      movie_id=candidates)
  np.testing.assert_allclose(
      scored["score"][0],
      model.history_rerank_scores(given[:1], stars[:1], candidates[:1])[0],
      rtol=1e-5)
  np.testing.assert_allclose(
      scored["score"][1],
      model.rerank_scores(users[1:2], candidates[:1])[0], rtol=1e-5)
  reranked = signatures["rerank_history"](
      user_id=users[:1], history_movie_id=given[:1],
      history_rating=stars[:1],
      movie_id=tf.constant([["m1", "m20", "m21", "m22"]]), k=tf.constant(4))
  assert reranked["movie_id"][0, -1].numpy() == b""  # m1 was rated.
  with pytest.raises(tf.errors.InvalidArgumentError, match="history_rating"):
    signatures["retrieve_history"](
        user_id=users, history_movie_id=given, history_rating=stars[:, :2],
        k=tf.constant(10))
