from glob import glob

from setuptools import find_packages, setup

package_name = "kdmarl_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="kdmarl maintainers",
    maintainer_email="maintainers@kdmarl.dev",
    description="Launch, parameters, simulation bridge, robot adapter and monitor for a kdmarl swarm.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "sim_bridge = kdmarl_bringup.sim_bridge:main",
            "robot_adapter = kdmarl_bringup.robot_adapter:main",
            "fake_robot = kdmarl_bringup.fake_robot:main",
            "monitor = kdmarl_bringup.monitor:main",
            "kdmarl-swarm = kdmarl_bringup.swarm_runner:main",
            "fleet_stop = kdmarl_bringup.fleet_stop:main",
        ]
    },
)
