"""Offline side: datasets, sampling, training, evaluation and export.

Modules under ``training.data`` and ``training.synth`` are torch-free (numpy only) so the
dataset readers and the synthetic walkers work without the ``train`` extra.
"""
