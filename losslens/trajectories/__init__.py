"""Trajectories of training runs (checkpoint series, embeddings, comparisons): later issues build here.

Runs written by ``losslens.core.train`` are the series these tools read.
"""
