"""Offline stage of kdmarl: batched MPE environments, the MAPPO teacher, KD-MARL distillation,
resource accounting and ONNX export. The only package that needs torch."""
