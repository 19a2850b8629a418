"""Speed and memory benchmarks of the trainers (``python -m benchmarks.run``).

Every trainer is built in-process on a synthetic dataset with its shipped
config and measured on random tensors in the same process, so that ratios
against a baseline (IVLP, PromptSRC, MaPLe, ERMWiSEFT, ZeroshotCLIP) compare
like with like. See docs/BENCHMARKS.md.
"""
