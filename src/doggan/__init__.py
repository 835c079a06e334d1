import os
from importlib.metadata import version

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI and newer; on
# AVX2 CPUs they train the default recipe several times faster (benchmarks/cpu_kernels.py, README).
# Set before any module imports TensorFlow; TF_ENABLE_ONEDNN_OPTS=0 in the environment still wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = version("doggan")
