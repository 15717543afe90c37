"""Distillation (`kdmarl distill`): a frozen teacher into budget-sized, critic-free students.

The students and their ladder (`students`), sensing and hardware profiles and teams (`profiles`), pruning
(`pruning`), roles (`roles`), students.pt (`students_file`), the team of students (`team`), the one distillation
loop (`loop`) and the two recipes it runs (`mappo_recipe` for MAPPO teachers, `qmix_recipe` for QMIX teachers),
the report's shared parts (`report`, `team_eval`), its config (`config`) and command line (`cli`).

May import: `envs`, `core`, `algos` (the teacher checkpoint and the QMIX mixer) and kdmarl_student's pure functions.
Never `export`, `reports`, `evaluation` or `experiments`.
"""
