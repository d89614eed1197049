"""TensorFlow/Keras only: text standardisation, architecture, training, evaluation, the artifact.

Never imports Apache Beam, `worker` or `pipelines`: usable from a notebook.
"""
