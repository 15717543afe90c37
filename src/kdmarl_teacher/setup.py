from glob import glob

from setuptools import find_packages, setup

package_name = "kdmarl_teacher"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["config/*.yaml", "config/*/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/config", glob(f"{package_name}/config/*.yaml")),
        (f"share/{package_name}/config/hardware", glob(f"{package_name}/config/hardware/*.yaml")),
        (f"share/{package_name}/config/teams", glob(f"{package_name}/config/teams/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="kdmarl maintainers",
    maintainer_email="maintainers@kdmarl.dev",
    description="MAPPO teacher, KD-MARL distillation and ONNX export for kdmarl (offline, torch).",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["kdmarl = kdmarl_teacher.cli:main"]},
)
