"""CCLGAN (Zhao, Cai, Hu, Yuan, 2024): unpaired deraining as cycle-consistent
translation with location contrast and cycle contrast in a semantic and in the
discriminators' feature space.
"""
