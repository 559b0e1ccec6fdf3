"""IFSS-Net: interactive few-shot Siamese network for muscle mask propagation in 3-D freehand ultrasound.

The core package. It never imports slicer, qt, vtk or ctk. Arrays are indexed (k, j, i) like
Slicer's ``arrayFromVolume``; the core propagates along the first axis. Geometry (spacing, origin,
direction) is kept in ITK order (i, j, k) in :class:`ifssnet.io.Geometry`. Units are mm.
"""
__version__ = "0.1.0"
