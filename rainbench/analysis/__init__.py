"""Analyses of a dataset's images beyond the benchmark's scores: measurements that check
claims made about rain and background, such as the intrinsic dimension of their patches.
"""
