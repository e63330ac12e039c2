"""Every benchmark of the repository, one package: each ``python -m bench.<module>``.

models (speed and memory of the fused models, paper Table V), teacher (the student next to
its deep teachers), node_bench / node_ladder / soak / lifecycle (the ROS node in real
processes), train_step (one training step); backends and report are their shared parts.
bench imports skd_saliency_ros and training; nothing imports bench (test/ aside), so the
layers stay a line (test/test_layers.py).
"""
