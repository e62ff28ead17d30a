"""File formats: Keras JSON+HDF5, ONNX (import/export), .nnet, and load_network dispatch.

References are independent of the code under test: forward passes written here in numpy from
the raw arrays (read with h5py, built by hand, or from the .nnet formula), and the onnx
package's own reference evaluator for ONNX graphs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from dynid.errors import DynidError, ModelFileError, UnsupportedLayerError
from dynid.formats import load_network, save_network
from dynid.formats.keras import load_keras
from dynid.formats.nnet import load_nnet, save_nnet
from dynid.formats.onnx_io import load_onnx, save_onnx
from dynid.modelfile import save_model
from dynid.relunet import ReLUNet
from tests.conftest import random_relunet

relu = lambda z: np.maximum(z, 0.0)  # noqa: E731


# ====================================================================== Keras


def _h5_forward(h5_path, x):
    """Hand-written forward pass from the raw HDF5 datasets (kernel (in, out), ReLU on all but
    the last layer), reading the layer order from the file's own attribute."""
    with h5py.File(h5_path, "r") as f:
        names = [n.decode() for n in f.attrs["layer_names"]]
        h = x
        for i, name in enumerate(names):
            grp = f[name][list(f[name].keys())[0]]
            z = h @ grp["kernel:0"][...].astype(np.float64) + grp["bias:0"][...]
            h = relu(z) if i < len(names) - 1 else z
    return h


@pytest.mark.parametrize("name,n_in", [("double_integrator", 2), ("quadrotor6d", 6)])
def test_keras_published_controllers_match_hdf5_forward(shared_benchmarks, name, n_in):
    folder = shared_benchmarks / name
    net = load_keras(folder / "controller.json", folder / "controller.h5")
    x = np.random.default_rng(0).normal(size=(500, n_in)) * 3
    np.testing.assert_allclose(net.forward(x), _h5_forward(folder / "controller.h5", x),
                               rtol=0, atol=1e-12)
    assert net.meta["source"] == "keras"
    # load_network finds the JSON beside the weights, from either file
    np.testing.assert_array_equal(load_network(folder / "controller.h5").forward(x),
                                  net.forward(x))
    np.testing.assert_array_equal(load_network(folder / "controller.json").forward(x),
                                  net.forward(x))


def _keras_files(tmp_path, layout, rng):
    """A synthetic Keras model: InputLayer, Dense(4, linear)+Activation(relu),
    Dense(3, relu, no bias), Dropout, Dense(2, linear), in one of three weight layouts."""
    k1, b1 = rng.normal(size=(3, 4)), rng.normal(size=4)
    k2 = rng.normal(size=(4, 3))
    k3, b3 = rng.normal(size=(3, 2)), rng.normal(size=2)
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "inp"}},
        {"class_name": "Dense", "config": {"name": "d1", "units": 4, "activation": "linear"}},
        {"class_name": "Activation", "config": {"name": "a1", "activation": "relu"}},
        {"class_name": "Dense", "config": {"name": "d2", "units": 3, "activation": "relu",
                                           "use_bias": False}},
        {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.5}},
        {"class_name": "Dense", "config": {"name": "d3", "units": 2, "activation": "linear"}},
    ]
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}
    h5 = tmp_path / "model.h5"
    with h5py.File(h5, "w") as f:
        if layout == "keras3":
            for name, arrs in (("d1", [k1, b1]), ("d2", [k2]), ("d3", [k3, b3])):
                for j, arr in enumerate(arrs):
                    f.create_dataset(f"layers/{name}/vars/{j}", data=arr.astype(np.float32))
        else:
            root = f.create_group("model_weights") if layout == "full" else f
            for name, kern, bias in (("d1", k1, b1), ("d2", k2, None), ("d3", k3, b3)):
                g = root.create_group(f"{name}/{name}_sub")
                g.create_dataset("kernel:0", data=kern.astype(np.float32))
                if bias is not None:
                    g.create_dataset("bias:0", data=bias.astype(np.float32))
            if layout == "full":
                f.attrs["model_config"] = json.dumps(config)
    if layout != "full":
        (tmp_path / "model.json").write_text(json.dumps(config))

    def forward(x):
        f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
        h = relu(x @ f32(k1) + f32(b1))
        h = relu(h @ f32(k2))
        return h @ f32(k3) + f32(b3)

    return h5, forward


@pytest.mark.parametrize("layout", ["weights", "full", "keras3"])
def test_keras_synthetic_layouts(tmp_path, layout):
    rng = np.random.default_rng(1)
    h5, forward = _keras_files(tmp_path, layout, rng)
    net = load_network(h5)
    assert net.widths == [3, 4, 3, 2]
    x = rng.normal(size=(200, 3))
    np.testing.assert_allclose(net.forward(x), forward(x), rtol=0, atol=1e-12)


def test_keras_unsupported_layers_are_named(tmp_path):
    rng = np.random.default_rng(2)
    h5, _ = _keras_files(tmp_path, "weights", rng)
    config = json.loads((tmp_path / "model.json").read_text())
    config["config"]["layers"][3]["config"]["activation"] = "tanh"
    (tmp_path / "model.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedLayerError, match="'d2'.*tanh"):
        load_keras(tmp_path / "model.json")
    config["config"]["layers"][3] = {"class_name": "Conv2D", "config": {"name": "conv_x"}}
    (tmp_path / "model.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedLayerError, match="conv_x.*Conv2D"):
        load_keras(tmp_path / "model.json")


def test_keras_bad_files(tmp_path):
    rng = np.random.default_rng(3)
    h5, _ = _keras_files(tmp_path, "weights", rng)
    config = json.loads((tmp_path / "model.json").read_text())
    config["config"]["layers"][1]["config"]["units"] = 5   # kernel has 4 columns
    (tmp_path / "model.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="d1"):
        load_keras(tmp_path / "model.json")
    config["config"]["layers"][1]["config"]["units"] = 4
    config["config"]["layers"][1]["config"]["name"] = "missing"
    (tmp_path / "model.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="missing"):
        load_keras(tmp_path / "model.json")
    with pytest.raises(ModelFileError):
        load_keras(tmp_path / "nothing.json")
    (tmp_path / "weights_only.h5").write_bytes(h5.read_bytes())
    with pytest.raises(ModelFileError, match="architecture"):
        load_keras(None, tmp_path / "weights_only.h5")


# ====================================================================== ONNX export / import


def _widths():
    return st.lists(st.integers(1, 6), min_size=2, max_size=5)


@settings(max_examples=20)
@given(widths=_widths(), frac=st.sampled_from([0.0, 0.4, 1.0]), seed=st.integers(0, 10**6))
def test_onnx_round_trip_float64(tmp_path_factory, widths, frac, seed):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, widths, identity_frac=frac)
    path = tmp_path_factory.mktemp("onnx") / "net.onnx"
    save_onnx(net, path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    x = rng.normal(size=(64, widths[0])) * 2
    # the exported graph computes the network (the onnx reference evaluator as judge)
    ref = ReferenceEvaluator(model).run(None, {"input": x})[0]
    np.testing.assert_allclose(ref, net.forward(x), rtol=1e-13, atol=1e-13)
    # our own structure comes back exactly
    back = load_onnx(path)
    assert len(back.weights) == len(net.weights)
    for a, b, ma, mb in zip(back.weights, net.weights, back.relu, net.relu):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)
    # the general converter gives the same map too
    general = load_onnx(path, keep_layers=False)
    np.testing.assert_allclose(general.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)
    assert general.n_relu == net.n_relu
    if all(m.any() for m in net.relu[:-1]):   # mixed layers are rebuilt as mixed layers
        assert general.widths == net.widths


def test_relu_on_output_units_round_trips(tmp_path):
    rng = np.random.default_rng(13)
    net = random_relunet(rng, [3, 5, 4], identity_frac=0.3)
    net = ReLUNet(net.weights, net.biases, list(net.relu[:-1]) + [np.array([1, 0, 1, 1], bool)])
    x = rng.normal(size=(100, 3)) * 2
    for suffix in (".onnx", ".nnet"):
        save_network(net, tmp_path / f"r{suffix}")
        back = load_network(tmp_path / f"r{suffix}")
        np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)
    general = load_onnx(tmp_path / "r.onnx", keep_layers=False)
    assert general.widths == net.widths          # ends with the mixed layer itself
    np.testing.assert_allclose(general.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_onnx_export_float32(tmp_path):
    rng = np.random.default_rng(4)
    net = random_relunet(rng, [3, 8, 8, 2], identity_frac=0.3)
    save_onnx(net, tmp_path / "n32.onnx", dtype="float32")
    model = onnx.load(str(tmp_path / "n32.onnx"))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    x = rng.normal(size=(50, 3))
    ref = ReferenceEvaluator(model).run(None, {"input": x.astype(np.float32)})[0]
    np.testing.assert_allclose(ref, net.forward(x), rtol=1e-4, atol=1e-5)
    back = load_network(tmp_path / "n32.onnx")
    for a, b in zip(back.weights, net.weights):
        np.testing.assert_array_equal(a, b.astype(np.float32).astype(np.float64))


def _model(nodes, inits, in_shape, out_shape, opset=13):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


def test_onnx_gemm_relu_by_hand():
    rng = np.random.default_rng(5)
    w1, b1 = rng.normal(size=(3, 5)), rng.normal(size=5)      # used with transB=0
    w2, b2 = rng.normal(size=(2, 5)), rng.normal(size=(1, 2))  # transB=1, alpha, beta
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["z1"], name="fc1"),
             helper.make_node("Relu", ["z1"], ["h1"], name="r1"),
             helper.make_node("Gemm", ["h1", "w2", "b2"], ["y"], name="fc2", transB=1,
                              alpha=0.5, beta=2.0)]
    model = _model(nodes, {"w1": w1, "b1": b1, "w2": w2, "b2": b2}, ["N", 3], ["N", 2])
    net = load_onnx(model)
    assert net.widths == [3, 5, 2]
    x = rng.normal(size=(100, 3))
    expected = 0.5 * relu(x @ _f32(w1) + _f32(b1)) @ _f32(w2).T + 2.0 * _f32(b2)
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_onnx_matmul_add_with_constant_nodes_and_normalisation():
    rng = np.random.default_rng(6)
    mean, scale = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    w1, b1, w2 = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=(6, 1))
    const = helper.make_tensor("c", TensorProto.FLOAT, [1], [0.25])
    nodes = [helper.make_node("Constant", [], ["mean"], name="k_mean",
                              value=numpy_helper.from_array(mean.astype(np.float32))),
             helper.make_node("Sub", ["x", "mean"], ["xc"], name="center"),
             helper.make_node("Div", ["xc", "scale"], ["xn"], name="scale"),
             helper.make_node("MatMul", ["xn", "w1"], ["m1"], name="mm1"),
             helper.make_node("Add", ["m1", "b1"], ["z1"], name="add1"),
             helper.make_node("Relu", ["z1"], ["h1"], name="relu1"),
             helper.make_node("MatMul", ["h1", "w2"], ["m2"], name="mm2"),
             helper.make_node("Constant", [], ["c"], name="k_c", value=const),
             helper.make_node("Add", ["m2", "c"], ["y"], name="add2")]
    model = _model(nodes, {"scale": scale, "w1": w1, "b1": b1, "w2": w2}, [1, 4], [1, 1])
    net = load_onnx(model)
    x = rng.normal(size=(100, 4))
    expected = relu((x - _f32(mean)) / _f32(scale) @ _f32(w1) + _f32(b1)) @ _f32(w2) + 0.25
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_onnx_matlab_style_1x1_convolutions():
    rng = np.random.default_rng(7)
    n, h, m = 3, 7, 2
    w1, b1 = rng.normal(size=(h, n, 1, 1)), rng.normal(size=h)
    w2, b2 = rng.normal(size=(m, h, 1, 1)), rng.normal(size=m)
    shape = np.array([1, m], dtype=np.int64)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="fc_1",
                              kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu_1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="fc_2",
                              kernel_shape=[1, 1]),
             helper.make_node("Reshape", ["c2", "shape"], ["y"], name="out_reshape")]
    graph = helper.make_graph(
        nodes, "matlab", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m])],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in
                     {"w1": w1, "b1": b1, "w2": w2, "b2": b2}.items()]
        + [numpy_helper.from_array(shape, "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    net = load_onnx(model)
    assert net.widths == [n, h, m]
    x = rng.normal(size=(50, n))
    expected = relu(x @ _f32(w1)[:, :, 0, 0].T + _f32(b1)) @ _f32(w2)[:, :, 0, 0].T + _f32(b2)
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)
    # a 3x3 kernel is refused, naming the node
    w3 = rng.normal(size=(h, n, 3, 3))
    bad = _model([helper.make_node("Conv", ["x", "w3"], ["y"], name="conv3x3",
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                 {"w3": w3}, [1, n, 1, 1], [1, h, 1, 1])
    with pytest.raises(UnsupportedLayerError, match="conv3x3.*Conv"):
        load_onnx(bad)


def test_onnx_wiring_against_reference_evaluator():
    """Skip connection, Concat/Split, LeakyRelu, Clip, BatchNormalization, Flatten, Transpose:
    the converted net must agree with onnx's own evaluator on random inputs."""
    rng = np.random.default_rng(8)
    w1, b1, w2 = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=(3, 6))
    bn = {"s": rng.uniform(0.5, 2, 4), "bb": rng.normal(size=4), "mu": rng.normal(size=4),
          "var": rng.uniform(0.5, 2, 4)}
    lo, hi = np.array(-0.5, np.float32), np.array(0.7, np.float32)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["xb"],
                         name="bn"),
        helper.make_node("Gemm", ["xb", "w1", "b1"], ["z"], name="fc"),
        helper.make_node("Split", ["z", "sp"], ["za", "zb"], name="split", axis=1),
        helper.make_node("LeakyRelu", ["za"], ["ha"], name="leaky", alpha=0.1),
        helper.make_node("Clip", ["zb", "lo", "hi"], ["hb"], name="clip"),
        helper.make_node("Concat", ["hb", "ha"], ["h"], name="cat", axis=1),
        helper.make_node("Transpose", ["h"], ["ht"], name="tr", perm=[1, 0]),
        helper.make_node("MatMul", ["w2", "ht"], ["o"], name="mm"),
        helper.make_node("Transpose", ["o"], ["ot"], name="tr2", perm=[1, 0]),
        helper.make_node("Slice", ["x", "st", "en", "ax"], ["xs"], name="skip"),
        helper.make_node("Max", ["ot", "zero"], ["om"], name="max0"),
        helper.make_node("Sub", ["om", "xs"], ["diff"], name="res"),
        helper.make_node("Flatten", ["diff"], ["y"], name="flat", axis=1),
    ]
    inits = {"w1": w1, "b1": b1, "w2": w2, **bn, "lo": lo, "hi": hi,
             "zero": np.zeros(1)}
    graph = helper.make_graph(
        nodes, "wired", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k)
                     for k, v in inits.items()]
        + [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
           {"sp": [3, 3], "st": [1], "en": [4], "ax": [1]}.items()])
    # opset 15: the reference evaluator's BatchNormalization for opsets 9-13 mixes in batch
    # statistics (its momentum default), which is not inference
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(model)
    net = load_onnx(model)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(net.forward(x.astype(np.float64)), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [9, 13])
def test_onnx_old_and_new_attribute_forms_and_shape_chains(opset):
    """Squeeze/Unsqueeze axes and Clip limits as attributes (old opsets) or inputs (new), and
    the Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain torch writes for a flatten
    (constant-folded), against onnx's reference evaluator."""
    rng = np.random.default_rng(14)
    w = rng.normal(size=(3, 4))
    i64 = lambda v: numpy_helper.from_array(np.array(v, np.int64))  # noqa: E731
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"], name="mm")]
    inits = [numpy_helper.from_array(w.astype(np.float32), "w")]
    if opset < 11:
        nodes.append(helper.make_node("Clip", ["z"], ["c"], name="clip", min=-0.3, max=0.8))
    else:
        nodes.append(helper.make_node("Clip", ["z", "lo", "hi"], ["c"], name="clip"))
        inits += [numpy_helper.from_array(np.array(-0.3, np.float32), "lo"),
                  numpy_helper.from_array(np.array(0.8, np.float32), "hi")]
    if opset < 13:
        nodes += [helper.make_node("Unsqueeze", ["c"], ["u"], name="unsq", axes=[2]),
                  helper.make_node("Squeeze", ["u"], ["s"], name="sq", axes=[2])]
    else:
        nodes += [helper.make_node("Unsqueeze", ["c", "ax2"], ["u"], name="unsq"),
                  helper.make_node("Squeeze", ["u", "ax2"], ["s"], name="sq")]
        inits.append(numpy_helper.from_array(np.array([2], np.int64), "ax2"))
    nodes += [helper.make_node("Shape", ["s"], ["shp"], name="shape"),
              helper.make_node("Constant", [], ["zero"], name="k0", value=i64(0)),
              helper.make_node("Gather", ["shp", "zero"], ["n"], name="batch", axis=0),
              helper.make_node("Unsqueeze", ["n"], ["n1"], name="n1", axes=[0])
              if opset < 13 else helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"], name="n1"),
              helper.make_node("Constant", [], ["m1"], name="k1", value=i64([-1])),
              helper.make_node("Concat", ["n1", "m1"], ["target"], name="cat", axis=0),
              helper.make_node("Reshape", ["s", "target"], ["y"], name="flatten")]
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "ax0"))
    graph = helper.make_graph(
        nodes, "old_new", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    net = load_onnx(model)
    ev = ReferenceEvaluator(model)
    for x in rng.normal(size=(30, 1, 3)).astype(np.float32):
        np.testing.assert_allclose(net.forward(x.astype(np.float64)), ev.run(None, {"x": x})[0],
                                   rtol=1e-5, atol=1e-6)


def test_onnx_unsupported_nodes_are_named(tmp_path):
    w = np.ones((2, 2))
    model = _model([helper.make_node("Gemm", ["x", "w"], ["z"], name="fc"),
                    helper.make_node("Sigmoid", ["z"], ["y"], name="squash")],
                   {"w": w}, [1, 2], [1, 2])
    with pytest.raises(UnsupportedLayerError, match="'squash'.*Sigmoid"):
        load_onnx(model)
    model = _model([helper.make_node("MatMul", ["x", "x"], ["y"], name="square")],
                   {}, [2, 2], [2, 2])
    with pytest.raises(UnsupportedLayerError, match="square"):
        load_onnx(model)
    (tmp_path / "junk.onnx").write_bytes(b"\x00not an onnx file at all")
    with pytest.raises(ModelFileError):
        load_network(tmp_path / "junk.onnx")


def test_onnx_export_of_published_controller_evaluates_identically(shared_benchmarks, tmp_path):
    folder = shared_benchmarks / "double_integrator"
    net = load_network(folder / "controller.h5")
    save_network(net, tmp_path / "c.onnx")
    x = np.random.default_rng(9).normal(size=(100, 2))
    ref = ReferenceEvaluator(str(tmp_path / "c.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(ref, _h5_forward(folder / "controller.h5", x), atol=1e-12)
    assert load_network(tmp_path / "c.onnx").meta["layer_names"] == net.meta["layer_names"]


# ====================================================================== .nnet


def _nnet_text(rng, n_in=2, hidden=(4, 3), n_out=2):
    """A hand-made .nnet file and the formula it stands for."""
    sizes = [n_in, *hidden, n_out]
    ws = [rng.normal(size=(b, a)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=b) for b in sizes[1:]]
    lo, hi = -rng.uniform(1, 2, n_in), rng.uniform(1, 2, n_in)
    means, ranges = rng.normal(size=n_in + 1), rng.uniform(0.5, 3, n_in + 1)
    row = lambda v: ", ".join(repr(float(x)) for x in v) + ","  # noqa: E731
    lines = ["// a test network", "// second comment line",
             f"{len(ws)},{n_in},{n_out},{max(sizes)},", row(sizes).replace(".0", ""), "0,",
             row(lo), row(hi), row(means), row(ranges)]
    for w, b in zip(ws, bs):
        lines += [row(r) for r in w] + [repr(float(v)) + "," for v in b]

    def formula(x):
        h = (np.clip(x, lo, hi) - means[:n_in]) / ranges[:n_in]
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = h @ w.T + b
            if i < len(ws) - 1:
                h = relu(h)
        return h * ranges[n_in] + means[n_in]

    return "\n".join(lines) + "\n", formula, lo, hi


def test_nnet_read_folds_normalisation(tmp_path):
    rng = np.random.default_rng(10)
    text, formula, lo, hi = _nnet_text(rng)
    (tmp_path / "a.nnet").write_text(text)
    net = load_network(tmp_path / "a.nnet")
    assert net.meta["domain"] == {"lo": lo.tolist(), "hi": hi.tolist()}
    inside = lo + (hi - lo) * rng.random((300, 2))
    np.testing.assert_allclose(net.forward(inside), formula(inside), rtol=1e-11, atol=1e-11)
    clipped = load_nnet(tmp_path / "a.nnet", clip_inputs=True)
    anywhere = rng.normal(size=(300, 2)) * 4
    np.testing.assert_allclose(clipped.forward(anywhere), formula(anywhere), rtol=1e-11,
                               atol=1e-11)


@settings(max_examples=20)
@given(widths=_widths(), frac=st.sampled_from([0.0, 0.5]), seed=st.integers(0, 10**6))
def test_nnet_round_trip(tmp_path_factory, widths, frac, seed):
    rng = np.random.default_rng(seed)
    net = random_relunet(rng, widths, identity_frac=frac)
    path = tmp_path_factory.mktemp("nnet") / "n.nnet"
    save_nnet(net, path, input_lo=-np.ones(widths[0]), input_hi=np.ones(widths[0]))
    back = load_nnet(path)
    assert all(m.all() for m in back.relu[:-1]) and not back.relu[-1].any()
    x = rng.uniform(-1, 1, size=(64, widths[0]))
    if frac == 0.0:  # same layers: the numbers come back exactly
        for a, b in zip(back.weights, net.weights):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(back.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_nnet_malformed(tmp_path):
    text, *_ = _nnet_text(np.random.default_rng(11))
    (tmp_path / "t.nnet").write_text("\n".join(text.splitlines()[:-3]))
    with pytest.raises(ModelFileError, match="truncated"):
        load_nnet(tmp_path / "t.nnet")
    (tmp_path / "x.nnet").write_text(text.replace("0,\n", "zero,\n", 1))
    with pytest.raises(ModelFileError):
        load_nnet(tmp_path / "x.nnet")


# ====================================================================== dispatch


def test_load_network_dispatch_and_errors(tmp_path):
    rng = np.random.default_rng(12)
    net = random_relunet(rng, [2, 5, 3], identity_frac=0.4)
    save_model(tmp_path / "m.h5", net, system="test")
    x = rng.normal(size=(20, 2))
    back = load_network(tmp_path / "m.h5")
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    assert back.meta["system"] == "test"
    for suffix in (".onnx", ".nnet"):
        save_network(net, tmp_path / f"m{suffix}")
        np.testing.assert_allclose(load_network(tmp_path / f"m{suffix}").forward(x),
                                   net.forward(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ModelFileError, match="extension"):
        load_network(tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_network(tmp_path / "absent.onnx")
    with pytest.raises(ModelFileError):
        save_network(net, tmp_path / "m.pt")
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(DynidError):
        load_network(tmp_path / "bad.h5")


def test_formats_do_not_import_reach():
    code = ("import sys, dynid.formats, dynid.formats.keras, dynid.formats.onnx_io, "
            "dynid.formats.nnet; sys.exit(1 if any(m == 'reach' or m.startswith('reach.') "
            "for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
