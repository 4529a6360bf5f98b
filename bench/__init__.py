"""tableside load-testing harness.

``python -m bench run <scenario>`` drives a tableside server (or one of the two baselines) over the real
protocol from several processes, merges their HdrHistograms, samples the server's CPU and RSS and writes a
JSON result plus a Markdown summary under ``bench/results/``. See ``bench/README.md``.
"""

__version__ = "0.1.0"
