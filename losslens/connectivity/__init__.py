"""Paths between two trained weight vectors: are two minima connected, and how high is the way between them?"""
