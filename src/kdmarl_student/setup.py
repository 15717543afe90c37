from setuptools import find_packages, setup

package_name = "kdmarl_student"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["schema/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="kdmarl maintainers",
    maintainer_email="maintainers@kdmarl.dev",
    description="On-board kdmarl runtime and student node (numpy + onnxruntime, never torch).",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={"console_scripts": ["student_node = kdmarl_student.student_node:main",
                                    "updater_node = kdmarl_student.updater_node:main",
                                    "announce = kdmarl_student.announce:main"]},
)
