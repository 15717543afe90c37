"""On-board runtime of kdmarl (docs/ARCHITECTURE.md, "The map"), and the rules every package shares.

- the scenario contract (``scenarios``) and sensing (``sensing``): pure Python + numpy;
- the bundle (``manifest`` builds and reads it, ``bundle_files``/``onnx_wire``/``signing`` guard it), the
  budget rule (``budget``), the 95 % interval (``stats``) and offline bundle evaluation (``bundle_eval``);
- the runtime (``policy``: ``StudentPolicy`` on ONNX Runtime, ``metering``, ``observation``);
- the student node (``student_node``) on the shared ROS plumbing (``ros_support``, ``lifetime``);
- ``testing``: the one builder of test and benchmark bundles (needs ``onnx``; never on a robot).

Robots install numpy, onnxruntime, psutil and rclpy; nothing here imports torch or kdmarl_teacher.
"""
