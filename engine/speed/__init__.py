"""How the engine computes, never what: the EngineOptions (options.py) and the speed paths
they switch on (fast layers, compiled kernels, lean Adam, direct backward, two CPU
streams), and the device and core choice. See docs/benchmark.md for what each buys."""
