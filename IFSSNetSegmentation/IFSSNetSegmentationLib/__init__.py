"""IFSSNetSegmentation module library.

logic.py: the Logic (headless: slicer MRML, vtk, ifssnet; no qt). gui.py: the Propagate panel shared by the
module page and the effect. SegmentEditorEffect.py: the "IFSS-Net" Segment Editor effect (class SegmentEditorEffect).
"""
