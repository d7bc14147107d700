"""Drives a running Open Inference Protocol server with Triton's own Python
clients (tritonclient.http and tritonclient.grpc) and prints, as JSON, what
they received. The Rust interop test starts the server, runs this script and
checks every figure against onnxruntime.

    triton_clients.py --http HOST:PORT --grpc HOST:PORT --model NAME \
        --input NAME --output NAME --rows ROWS.json
"""

import argparse
import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def http_checks(args, rows):
    client = httpclient.InferenceServerClient(url=args.http)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(args.model),
        "metadata": client.get_model_metadata(args.model),
    }
    for binary in (True, False):
        tensor = httpclient.InferInput(args.input, list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        wanted = httpclient.InferRequestedOutput(args.output, binary_data=binary)
        result = client.infer(args.model, [tensor], outputs=[wanted], request_id="http-1")
        key = "binary" if binary else "json"
        out[key] = result.as_numpy(args.output).reshape(-1).tolist()
        out[key + "_id"] = result.get_response()["id"]
    # No outputs named: the client asks for every output in binary form.
    tensor = httpclient.InferInput(args.input, list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    out["default"] = client.infer(args.model, [tensor]).as_numpy(args.output).reshape(-1).tolist()
    # Bad input: one column short.
    bad = httpclient.InferInput(args.input, [1, rows.shape[1] - 1], "FP32")
    bad.set_data_from_numpy(rows[:1, :-1])
    try:
        client.infer(args.model, [bad])
        out["bad_shape"] = None
    except InferenceServerException as e:
        out["bad_shape"] = {"status": e.status(), "message": e.message()}
    return out


def grpc_checks(args, rows):
    client = grpcclient.InferenceServerClient(url=args.grpc)
    metadata = client.get_model_metadata(args.model, as_json=True)
    out = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(args.model),
        "metadata": metadata,
    }
    tensor = grpcclient.InferInput(args.input, list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = client.infer(args.model, [tensor], outputs=[grpcclient.InferRequestedOutput(args.output)])
    out["infer"] = result.as_numpy(args.output).reshape(-1).tolist()

    bad = grpcclient.InferInput(args.input, [1, rows.shape[1]], "FP64")
    bad.set_data_from_numpy(rows[:1].astype(np.float64))
    try:
        client.infer(args.model, [bad])
        out["bad_datatype"] = None
    except InferenceServerException as e:
        out["bad_datatype"] = {"status": e.status(), "message": e.message()}

    # The bidirectional stream: one request per row, one answer each, in order.
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i, row in enumerate(rows):
        one = grpcclient.InferInput(args.input, [1, rows.shape[1]], "FP32")
        one.set_data_from_numpy(row.reshape(1, -1))
        client.async_stream_infer(args.model, [one], request_id=str(i))
    # A bad request in the middle of the stream must not end it.
    broken = grpcclient.InferInput(args.input, [1, rows.shape[1] - 1], "FP32")
    broken.set_data_from_numpy(rows[:1, :-1])
    client.async_stream_infer(args.model, [broken], request_id="broken")
    last = grpcclient.InferInput(args.input, [1, rows.shape[1]], "FP32")
    last.set_data_from_numpy(rows[:1])
    client.async_stream_infer(args.model, [last], request_id="last")
    stream = []
    for _ in range(len(rows) + 2):
        result, error = answers.get(timeout=30)
        if error is not None:
            stream.append({"error": error.message()})
        else:
            response = result.get_response()
            stream.append({"id": response.id, "score": result.as_numpy(args.output).reshape(-1).tolist()})
    client.stop_stream()
    out["stream"] = stream
    return out


def main():
    parser = argparse.ArgumentParser()
    for flag in ("--http", "--grpc", "--model", "--input", "--output", "--rows"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args()
    with open(args.rows) as f:
        rows = np.asarray(json.load(f), dtype=np.float32)
    json.dump({"http": http_checks(args, rows), "grpc": grpc_checks(args, rows)}, sys.stdout)


if __name__ == "__main__":
    main()
