"""NLCL (Ye et al., CVPR 2022): unpaired deraining by decomposing a rainy image into a
background and a rain layer, trained with non-local and location contrasts.
"""
