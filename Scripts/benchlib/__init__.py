"""Shared helpers of the benchmark scripts (Scripts/bench-*).

host       the machine's bounds: CPU model and flags, memory bandwidth, numpy/OpenBLAS sgemm rates
           (`python3 Scripts/benchlib/host.py` prints them as JSON).
llama_cpp  llama.cpp as a side-by-side reference: sdist from PyPI, llama-bench build, gguf conversion
           and llama-bench runs, all in a cache folder outside the repository.
"""
