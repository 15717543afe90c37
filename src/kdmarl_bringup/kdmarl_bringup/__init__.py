"""A kdmarl swarm (docs/ARCHITECTURE.md, "The map"): which nodes run (``swarm_spec``, shared by
``launch/swarm.launch.py`` and the ``kdmarl-swarm`` runner), the mpe2 simulation bridge, the robot adapter
(odom in, cmd_vel out), a fake kinematic robot and the resource monitor. Imports neither torch nor
onnxruntime nor psutil: only the student nodes it starts run a policy."""
