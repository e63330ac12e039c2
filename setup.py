"""ament_python package definition of skd_saliency_ros (also pip-installable)."""

from glob import glob

from setuptools import setup

PACKAGE = "skd_saliency_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    # core (no ROS) <- ros (the nodes) <- bags (saliency_replay); demo: make demo's processes
    packages=[PACKAGE, f"{PACKAGE}.core", f"{PACKAGE}.ros", f"{PACKAGE}.bags", f"{PACKAGE}.demo"],
    # The trained default model travels with its card (Markdown and JSON): the research-use
    # terms of its teacher's weights go wherever the model is installed.
    package_data={PACKAGE: ["weights/*.pt", "weights/*.onnx", "weights/*.md", "weights/*.json"]},
    # Python 3.10 is the floor (Ubuntu 22.04: Humble, JetPack 6); test_platform.py checks the
    # runtime package against it with vermin.
    python_requires=">=3.10",
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.*")),
        # teacher YAMLs of the training pipeline (their ONNX files stay in the data bundle)
        (f"share/{PACKAGE}/config/teachers", glob("config/teachers/*.yaml")),
        # the bundle's dataset split, beside them (every config file is installed)
        (f"share/{PACKAGE}/config/datasets", glob("config/datasets/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="skd_saliency_ros maintainers",
    maintainer_email="maintainer@example.com",
    description="Live aerial-video saliency (spatiotemporal knowledge distillation) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "saliency_node = skd_saliency_ros.ros.node:main",
            "saliency_replay = skd_saliency_ros.bags.replay:main",
            "attention_to_setpoint = skd_saliency_ros.ros.attention_node:main",
        ],
    },
)
