"""Offline stage of kdmarl: everything that needs torch, in sub-packages with one job each. Dependencies point one
way, from the bottom of `LAYERS` up; `test/test_import_direction.py` fails on an import against it or a circle.

- ``envs``: batched environments behind one contract (``envs.contract``), ``make_env``;
- ``core``: networks, losses, value normalization, resources, run configuration base, run files, the training
  run (resume, progress, checkpoint cadence, divergence guard, metrics log), episode runners;
- ``algos``: the teacher algorithms (MAPPO, QMIX), their configs and the one owner of teacher.pt;
- ``distill``: students, profiles, pruning, roles, students.pt, the one distillation loop and its two recipes;
- ``export``: ONNX export, parity, the bundle, signing; ``reports``: figures from runs and benchmarks;
- ``evaluation``: ``kdmarl evaluate`` for teachers and bundles; ``experiments``: sweeps;
- ``cli``: the ``kdmarl`` dispatcher, importing each subcommand's module when it runs.

The rules it shares with robots (scenarios, sensing, manifest, statistics) come from kdmarl_student.
"""

# Bottom to top: a module may import its own sub-package and the sub-packages of lower rows, never a higher row nor
# a sibling on its own row (export and reports are independent of each other).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("envs",),
    ("core",),
    ("algos",),
    ("distill",),
    ("export", "reports"),
    ("evaluation",),
    ("experiments",),
    ("cli",),
)
