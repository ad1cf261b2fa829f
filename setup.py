from setuptools import find_packages, setup

setup(
    name="appliance",
    version="0.1.0",
    description="Shop-floor vision appliance: multi-stream camera analytics for pharmaceutical plants",
    python_requires=">=3.10",
    packages=find_packages(include=["appliance", "appliance.*"]),
    install_requires=[
        "numpy>=1.24",
        "onnxruntime>=1.16",
        "pydantic>=2.5,<3",
        "PyYAML>=6.0",
        "prometheus-client>=0.19",
        "scipy>=1.10",
        "paho-mqtt>=2.0,<3",
        "cryptography>=3.4",
        "psutil>=5.9",  # host CPU and memory metrics
        "nvidia-ml-py>=12.535",  # GPU metrics through NVML where a driver is installed (absent otherwise)
    ],
    extras_require={
        "jetson": ["tensorrt", "pycuda"],
        # Tests, and the tools that generate scenes and train the demo models.
        "dev": [
            "pytest>=7.4",
            "pytest-timeout>=2.2",
            "onnx>=1.15",
            "ruff>=0.4",
            "opencv-python-headless>=4.8",
            "torch==2.13.0",
        ],
    },
    entry_points={"console_scripts": ["appliance=appliance.cli:main"]},
)
