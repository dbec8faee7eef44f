"""Synthetic rain for paired splits: `recipes` names each rain type's model and parameter
ranges, `render` draws it onto a clean image deterministically from a seed.
"""
