"""`kdmarl evaluate`: a teacher on fixed seeds against random (`evaluate`), or a bundle alone through ONNX Runtime
(`bundle`), with the tables both print (`tables`).

May import every lower row of `kdmarl_teacher.LAYERS` (envs, core, algos, distill, export, reports). Never
`experiments`.
"""
