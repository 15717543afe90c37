"""From a distillation run to a deployable bundle (`kdmarl export`, `kdmarl sign`): ONNX export, parity between
torch and ONNX Runtime, the bundle's manifest and latency, signing.

May import: `envs`, `core`, `algos`, `distill` and kdmarl_student (the bundle's format is the student's). Never
`reports` (its sibling), `evaluation` or `experiments`.
"""
