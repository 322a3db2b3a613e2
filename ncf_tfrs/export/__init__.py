"""The export stage: TF Serving SavedModels, a ScaNN index, models.config.

One export writes the same integer version into three folders of the TF
Serving model root (layout and names: `ncf_tfrs.serving.contract`):

  <export_dir>/<model_name>/<version>/        SavedModel, stock TF ops only:
                                              what stock TF Serving loads.
  <export_dir>/<model_name>_index/<version>/  ScaNN index of the movie
                                              embeddings (scann/), movies.tsv
                                              (row i = datapoint i) and
                                              manifest.json.
  <export_dir>/<model_name>_scann/<version>/  SavedModel with the ScaNN op
                                              inside: in process, or custom
                                              TF Serving builds only.

plus `models.config` (stock model only) and example REST request bodies in
`requests/`. Stock TF Serving cannot load ScaNN ops, so candidate lookup runs
beside it (`ncf_tfrs.serving`) with the scann Python searcher over the index,
and the rerank runs in TF Serving.

- `signatures`: the serving modules and their signatures;
- `scann_index`: ScaNN settings and builders;
- `stock_ops`: the check that a SavedModel has only TensorFlow's own ops;
- `publish`: versions written to a temp folder and renamed into place, the
  stock model last, so a watching server never sees half a version;
- `exporter`: `export_model`, which does all of the above for one version;
- `__main__`: the `python -m ncf_tfrs.export` command.
"""

from ncf_tfrs.export.exporter import export_model
from ncf_tfrs.export.exporter import models_config
from ncf_tfrs.export.publish import next_version
from ncf_tfrs.export.publish import publish_version
from ncf_tfrs.export.scann_index import build_scann_searcher
from ncf_tfrs.export.scann_index import ScannConfig
from ncf_tfrs.export.signatures import ScannServingModule
from ncf_tfrs.export.signatures import ServingModule
from ncf_tfrs.export.stock_ops import check_stock_ops
from ncf_tfrs.export.stock_ops import NonStockOpError
from ncf_tfrs.export.stock_ops import saved_model_ops
