"""TCLSTA: two-stream collaborative learning with spatial-temporal attention.

Peng, Zhao, Zhang, "Two-stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", arXiv 1711.03273.
"""

__version__ = "0.1.0"
