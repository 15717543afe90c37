"""What every training run and every algorithm stands on: networks (`networks`), losses (`losses`), value
normalization (`value_norm`), resource accounting (`resources`), typed errors (`errors`), the run-configuration
base (`config`), run files (`run_files`: atomic saves, checkpoints read back, the divergence stop), the one
training run (`training_run`: resume, progress, checkpoint cadence, divergence guard, metrics log) and the
episode runners every figure uses (`episodes`).

May import: `envs` and kdmarl_student's pure functions. Never an algorithm or anything above (`kdmarl_teacher.LAYERS`).
"""
