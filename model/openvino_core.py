"""The BiLSTM's numeric core as an OpenVINO model, built from the Keras layers' weights.

How the LSTMs reach OpenVINO decides its speed. Reading the Keras model (or its
SavedModel) turns each LSTM into a `TensorIterator` loop, one small step per token:
about 0.3× TensorFlow XLA on an AMX Xeon. One bidirectional `LSTMSequence` op, as an
ONNX export with rewritten LSTMs would give, runs as the CPU plugin's fused RNN
kernel, in bfloat16 on AMX at `INFERENCE_PRECISION_HINT=bf16`. The graph is small
enough to write down directly: gather (embedding), one bidirectional LSTMSequence,
dense + relu, max over time, dense, temperature, softmax. So it is built here from
the weights, and needs neither tf2onnx nor onnx, nor their TensorFlow version pins.

Only the numeric part moves: the text vectoriser stays in TensorFlow (OpenVINO has
no string ops), and the ids it makes are handed over as a NumPy array. `layers`
accepts exactly the reference architecture (`model.architecture.end_to_end` over
`build`); anything else is served by TensorFlow, and the reason is given.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass

import keras
import numpy as np

HINTS = {"fp32": "f32", "bf16": "bf16"}  # our precision → OpenVINO's INFERENCE_PRECISION_HINT


def available() -> bool:
    """Whether the OpenVINO runtime can be imported: it is in the default install, but a platform without its
    wheel, or an image built without it, serves on TensorFlow alone."""
    return importlib.util.find_spec("openvino") is not None


@dataclass(frozen=True)
class Layers:
    """The reference model's parts, as the OpenVINO graph needs them."""

    vectorizer: keras.layers.TextVectorization
    embedding: keras.layers.Embedding
    bilstm: keras.layers.Bidirectional
    dense: keras.layers.Dense
    logits: keras.layers.Dense
    scale: float  # 1 / temperature (1.0 without a temperature layer)


_BODY = (keras.layers.Embedding, keras.layers.Bidirectional, keras.layers.Dropout, keras.layers.Dense,
         keras.layers.GlobalMaxPooling1D, keras.layers.Dense)


def layers(model: keras.Model) -> Layers | str:
    """The parts of an end-to-end reference BiLSTM, or why this model is not one OpenVINO can take over."""
    outer = model.layers
    inner = [layer for layer in outer if isinstance(layer, keras.Model)]
    if len(inner) != 1 or outer[1] is not inner[0]:
        return "it is not an end-to-end wrapper around one classifier"
    after = outer[2:]
    if [type(layer) for layer in after] not in ([keras.layers.Softmax],
                                                [keras.layers.Rescaling, keras.layers.Softmax]):
        return "layers after the classifier are not [temperature,] softmax"
    scale = 1.0
    if len(after) == 2:
        config = after[0].get_config()
        if config.get("offset", 0.0) != 0.0:
            return "its temperature layer has an offset"
        scale = float(config["scale"])
    body = [layer for layer in inner[0].layers if not isinstance(layer, keras.layers.InputLayer)]
    if not body or not isinstance(body[0], keras.layers.TextVectorization):
        return "its classifier does not start with a TextVectorization"
    vectorizer, rest = body[0], body[1:]
    if len(rest) != len(_BODY) or not all(type(layer) is kind for layer, kind in zip(rest, _BODY, strict=True)):
        return ("its layers are not the reference BiLSTM's (embedding, bidirectional LSTM, dropout, dense, max pool, "
                "dense)")
    embedding, bilstm, _, dense, _, logits = rest
    why = _unsupported(vectorizer, embedding, bilstm, dense, logits)
    return why or Layers(vectorizer, embedding, bilstm, dense, logits, scale)


def _unsupported(vectorizer, embedding, bilstm, dense, logits) -> str | None:
    """What in these layers' settings the graph below does not compute (None: nothing)."""
    if vectorizer.get_config().get("output_mode") != "int" or not vectorizer.get_config().get("output_sequence_length"):
        return "its vectoriser does not output fixed-length token ids"
    if embedding.get_config().get("mask_zero"):
        return "its embedding masks padding (mask_zero), which this graph does not"
    if bilstm.get_config().get("merge_mode") != "concat":
        return "its bidirectional layer does not concatenate"
    for lstm in (bilstm.forward_layer, bilstm.backward_layer):
        config = lstm.get_config()
        if not isinstance(lstm, keras.layers.LSTM) or not config.get("return_sequences"):
            return "its bidirectional layer is not an LSTM returning sequences"
        if (config.get("activation"), config.get("recurrent_activation"), config.get("use_bias")) != \
                ("tanh", "sigmoid", True):
            return "its LSTM is not tanh/sigmoid with a bias"
    if dense.get_config().get("activation") != "relu" or logits.get_config().get("activation") != "linear":
        return "its dense layers are not relu and linear"
    if not (dense.get_config().get("use_bias") and logits.get_config().get("use_bias")):
        return "its dense layers have no bias"
    return None


def _fico(keras_gates: np.ndarray, axis: int) -> np.ndarray:
    """Keras orders an LSTM's gates i, f, c, o; OpenVINO's LSTMSequence wants f, i, c, o."""
    i, f, c, o = np.split(keras_gates, 4, axis=axis)
    return np.concatenate([f, i, c, o], axis=axis)


def graph(parts: Layers):
    """The OpenVINO model: token ids [batch, sequence] (int64) → class probabilities [batch, classes]."""
    import openvino as ov
    import openvino.opset13 as ops

    units = parts.bilstm.forward_layer.units
    length = parts.vectorizer.get_config()["output_sequence_length"]
    ids = ops.parameter([-1, length], np.int64, name="token_ids")
    table = parts.embedding.embeddings.numpy().astype(np.float32)
    x = ops.gather(ops.constant(table), ids, ops.constant(np.int64(0)))  # [batch, sequence, embedding]

    directions = (parts.bilstm.forward_layer.cell, parts.bilstm.backward_layer.cell)
    w = np.stack([_fico(cell.kernel.numpy().T, 0) for cell in directions]).astype(np.float32)
    r = np.stack([_fico(cell.recurrent_kernel.numpy().T, 0) for cell in directions]).astype(np.float32)
    b = np.stack([_fico(cell.bias.numpy(), 0) for cell in directions]).astype(np.float32)
    batch = ops.gather(ops.shape_of(ids), ops.constant(np.int64([0])), ops.constant(np.int64(0)))
    zeros = ops.broadcast(ops.constant(np.float32(0)),
                          ops.concat([batch, ops.constant(np.int64([2, units]))], 0))
    lengths = ops.broadcast(ops.constant(np.int32(length)), batch)
    sequence = ops.lstm_sequence(x, zeros, zeros, lengths, ops.constant(w), ops.constant(r), ops.constant(b),
                                 units, "bidirectional").output(0)  # [batch, 2, sequence, units]
    # Keras concatenates [forward_t, backward_t] at each t (its backward outputs back in input order, as here)
    x = ops.reshape(ops.transpose(sequence, ops.constant(np.int64([0, 2, 1, 3]))),
                    ops.constant(np.int64([0, length, 2 * units])), special_zero=True)
    x = ops.relu(_dense(ops, x, parts.dense))
    x = ops.reduce_max(x, ops.constant(np.int64([1])), keep_dims=False)
    x = _dense(ops, x, parts.logits)
    if parts.scale != 1.0:
        x = ops.multiply(x, ops.constant(np.float32(parts.scale)))
    probabilities = ops.softmax(x, -1)
    return ov.Model([probabilities], [ids], "numeric_core")


def _dense(ops, x, layer: keras.layers.Dense):
    kernel, bias = (w.numpy().astype(np.float32) for w in (layer.kernel, layer.bias))
    return ops.add(ops.matmul(x, ops.constant(kernel), False, False), ops.constant(bias))


class OpenVinoCore:
    """The compiled numeric core: ids → probabilities, callable from any thread.

    A CompiledModel's own `__call__` shares one infer request, which two Beam threads
    must not use at once; each thread gets its own here (requests share the weights).
    """

    def __init__(self, parts: Layers, precision: str):
        import openvino as ov

        self.precision = precision
        self._compiled = ov.Core().compile_model(graph(parts), "CPU", {
            "INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"})
        self.hint = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # f32 if no bf16 here
        self._local = threading.local()

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(ids, dtype=np.int64)})
        return request.get_output_tensor(0).data.copy()
