"""Launch, parameters, the MPE simulation bridge, the robot adapter and the resource monitor of a
kdmarl swarm."""
