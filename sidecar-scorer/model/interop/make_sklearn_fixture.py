"""Makes the scikit-learn fixtures: models trained by scikit-learn on
outrider's generated transactions and converted to ONNX by skl2onnx. They
stand for users' own models: the tests serve them with outrider's server and
compare with onnxruntime.

    make_sklearn_fixture.py TRANSACTIONS.csv SCHEMA.json OUT_DIR

writes OUT_DIR/sklearn_forest.onnx (a random forest: an ai.onnx.ml
TreeEnsembleClassifier) and OUT_DIR/sklearn_logistic.onnx (a logistic
regression: an ai.onnx.ml LinearClassifier). SCHEMA.json is what
`outrider-model schema` prints; `make model-fixtures` runs all of it.
"""

import csv
import json
import os
import sys

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def load(path, schema):
    codes = {name: i for i, name in enumerate(schema["categories"]["merchant_category"])}
    rows, labels = [], []
    with open(path) as f:
        for record in csv.DictReader(f):
            row = []
            for feature in schema["features"]:
                value = record[feature]
                row.append(codes.get(value, -1) if feature == "merchant_category" else float(value))
            rows.append(row)
            labels.append(int(record["is_fraud"]))
    return np.asarray(rows, dtype=np.float32), np.asarray(labels)


def export(model, schema, path):
    onnx_model = convert_sklearn(
        model,
        initial_types=[(schema["input"], FloatTensorType([None, len(schema["features"])]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 13, "ai.onnx.ml": 1},
    )
    for key, value in (
        ("outrider.features", json.dumps(schema["features"])),
        ("outrider.categories", json.dumps(schema["categories"])),
    ):
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(onnx_model)
    with open(path, "wb") as f:
        f.write(onnx_model.SerializeToString())
    print(f"wrote {path}", file=sys.stderr)


def main():
    data_path, schema_path, out_dir = sys.argv[1:4]
    with open(schema_path) as f:
        schema = json.load(f)
    x, y = load(data_path, schema)
    split = int(len(x) * 0.8)  # rows are in time order
    models = {
        "sklearn_forest": RandomForestClassifier(
            n_estimators=20, max_depth=6, min_samples_leaf=20, random_state=0
        ),
        "sklearn_logistic": LogisticRegression(max_iter=5000),
    }
    for name, model in models.items():
        model.fit(x[:split], y[:split])
        auc = roc_auc_score(y[split:], model.predict_proba(x[split:])[:, 1])
        print(f"{name}: held-out ROC AUC {auc:.4f}", file=sys.stderr)
        export(model, schema, os.path.join(out_dir, name + ".onnx"))


if __name__ == "__main__":
    main()
