"""On-board runtime of kdmarl: load and verify one agent of a bundle, validate observations, run its ONNX
policy, measure itself; and the student node. Imports numpy and onnxruntime, never torch."""
