from model.architecture import ArchitectureConfig, build


def test_reference_architecture_parameters_and_shapes():
    model = build(ArchitectureConfig(), n_classes=32)
    assert model.count_params() == 2_194_016
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert trainable == 2_194_016
    shapes = [tuple(layer.output.shape) for layer in model.layers[1:]]
    assert shapes == [(None, 40), (None, 40, 16), (None, 40, 512), (None, 40, 512), (None, 40, 64), (None, 64),
                      (None, 32)]
    kinds = [type(layer).__name__ for layer in model.layers[1:]]
    assert kinds == ["TextVectorization", "Embedding", "Bidirectional", "Dropout", "Dense", "GlobalMaxPooling1D",
                     "Dense"]
    assert model.get_layer("bilstm").forward_layer.return_sequences
    assert model.get_layer("dropout").rate == 0.2


def test_sizes_are_configurable():
    model = build(ArchitectureConfig(max_tokens=100, sequence_length=8, embedding_dim=4, lstm_units=3,
                                     dense_units=5), n_classes=2)
    assert model.layers[1].output.shape == (None, 8)
    assert model.output.shape == (None, 2)
    # 100·4 + 2·4·(3·(4+3)+3) + (6·5+5) + (5·2+2)
    assert model.count_params() == 400 + 192 + 35 + 12
