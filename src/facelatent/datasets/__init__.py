"""Synthetic face-recognition datasets (ExFaceGAN, Boutros et al. IJCB 2023): a folder of aligned
112x112 crops per synthetic identity with its manifest (`dataset.json`) and one metadata row per
generated sample (`metadata.parquet`), and the measures of how usable such a dataset is for
training a recogniser: verification scores, EER, FNMR at a fixed FMR, identity collisions,
intra-class attribute spread (`facelatent.datasets.quality`) and the HTML report that compares a
dataset with a baseline (`facelatent.datasets.report`).
"""
