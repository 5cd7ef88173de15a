"""Procedural synthetic walkers (torch-free): identities, kinematics, rendering, dataset writer.

``identity`` draws who walks, ``kinematics`` poses the body per frame, ``render`` films it
and adds segmentation noise, ``dataset`` writes a CASIA-B-like OpenGait dataset
(``gaitid synth``).
"""
