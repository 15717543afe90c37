"""Figures (`kdmarl report`): learning curves of a teacher run, distillation figures, and the benchmark figures
drawn from bench/results. Reads run files; computes nothing that a run has not written.

May import: `envs`, `core`, `algos`, `distill`. Never `export` (its sibling), `evaluation` or `experiments`.
"""
