"""Reference figures of DESIGN.md §5, quoted by `kdmarl evaluate` (eval.json) and drawn by `kdmarl report`.

Torch-free on purpose: the report imports it, and `kdmarl report` must run where only the results are.
"""

# mpe2 simple_spread_v3, N=3, 25 steps, seeds 1000-1199, our team-return scale.
SPREAD_REFERENCES = {"random": -26.9, "velocity_controller": -8.05, "model_based_planner": -7.05}
