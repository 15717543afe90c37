"""Offline stage of kdmarl (docs/ARCHITECTURE.md, "The map"): batched MPE environments (``envs``), the MAPPO
teacher (``mappo``, ``networks``, ``losses``, ``checkpoint``, ``config``), KD-MARL distillation (``distill``,
``students``, ``pruning``, ``students_file``), ONNX export and signing (``export``, ``sign``), evaluation and
reports. The only package that needs torch; the rules it shares with robots come from kdmarl_student."""
