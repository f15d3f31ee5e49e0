"""Readers of foreign weight formats, kept together: each turns one file format into plain
numpy constants and a graph description, never executes it, and counts what a loader took so
the loader can fail on any constant it did not map.

- :mod:`~facelatent.formats.ir`: OpenVINO IR v10 (``.xml`` + ``.bin``), the MobileStyleGAN files
- :mod:`~facelatent.formats.onnx`: ONNX, with constant folding of block-quantised weights
  (YuNet, SFace, the age and gender nets)
- :mod:`~facelatent.formats.tfjs`: TensorFlow.js weight manifests (face-api's nets)
- :mod:`~facelatent.formats.tflite`: TFLite flatbuffers (the eyeglasses classifier)

The architectures that consume them live with their models (``generators/``, ``faces/``).
"""
