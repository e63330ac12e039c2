"""``python -m skd_saliency_ros.demo``: run the demo (skd_saliency_ros/demo/demo.py)."""

import sys

from skd_saliency_ros.demo.demo import main

sys.exit(main())
