"""Reference computations for the Rust tests, from the libraries the field
uses: onnxruntime runs an ONNX model, scikit-learn computes ranking metrics.

    reference.py onnxruntime MODEL.onnx INPUTS.json
        INPUTS.json: {"<input>": {"datatype": "FP32", "shape": [n, k], "data": [...]}}
        prints {"<output>": {"shape": [...], "data": [...]}} (flattened, row-major)

    reference.py metrics SCORES.json
        SCORES.json: {"scores": [...], "labels": [0/1, ...]}
        prints {"roc_auc": ..., "pr_auc": ...} (roc_auc_score, average_precision_score)
"""

import json
import sys

import numpy as np

DTYPES = {
    "BOOL": np.bool_,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "FP64": np.float64,
}


def run_onnxruntime(model_path, inputs_path):
    import onnxruntime as ort

    with open(inputs_path) as f:
        inputs = json.load(f)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    feeds = {
        name: np.asarray(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
        for name, t in inputs.items()
    }
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, feeds)
    return {
        name: {"shape": list(value.shape), "data": value.reshape(-1).tolist()}
        for name, value in zip(names, results)
    }


def metrics(scores_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    with open(scores_path) as f:
        data = json.load(f)
    scores, labels = np.asarray(data["scores"]), np.asarray(data["labels"])
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
    }


def main():
    command = sys.argv[1]
    if command == "onnxruntime":
        result = run_onnxruntime(sys.argv[2], sys.argv[3])
    elif command == "metrics":
        result = metrics(sys.argv[2])
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
