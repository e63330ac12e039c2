"""``make demo``: the node, a video player and a recorder as three processes on a real clip.

``python -m skd_saliency_ros.demo`` runs it (see demo.py).
"""
