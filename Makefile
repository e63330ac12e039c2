# The README's two commands: `make demo` and `make test`. Everything installs into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Real data bundle (gaze videos, unlabeled clips, priors); override with SKD_DATA_DIR=/path.
SKD_DATA_DIR ?= $(abspath $(CURDIR)/../shared/data)
export SKD_DATA_DIR
# ROS 2 from PyPI wheels: the venv is the ament prefix; discovery stays on this host.
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export PYTHONUNBUFFERED := 1

.PHONY: venv venv-pysaliency demo test lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip wheel "setuptools<80"
	$(VPY) -m pip install --quiet -r requirements.txt
	touch $@

# pysaliency (reference metrics) needs numpy<2.4 and pkg_resources (setuptools<81): own venv.
venv-pysaliency: .venv-pysaliency/.installed

.venv-pysaliency/.installed: requirements-pysaliency.txt
	test -x .venv-pysaliency/bin/python || $(PYTHON) -m venv .venv-pysaliency
	.venv-pysaliency/bin/python -m pip install --quiet --upgrade pip wheel "setuptools>=77.0.3,<81"
	.venv-pysaliency/bin/python -m pip install --quiet -r requirements-pysaliency.txt
	.venv-pysaliency/bin/python -c "import pysaliency"
	touch $@

demo: venv
	$(VPY) -m skd_saliency_ros.demo

test: venv venv-pysaliency
	ROS_DOMAIN_ID=$$(( RANDOM % 101 + 1 )) $(VPY) -m pytest test

lint: venv
	$(VPY) -m flake8 skd_saliency_ros training bench tools test setup.py launch

clean:
	rm -rf demo_out build install log .pytest_cache
