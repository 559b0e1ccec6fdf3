"""The "IFSS-Net" Segment Editor effect: paint 3 slices, Propagate, Apply.

Registered at start-up by ``IFSSNetSegmentation.py`` (as SegmentEditorExtraEffects registers its effects):
``qSlicerSegmentEditorScriptedEffect.setPythonSource(<this file>)`` loads the class ``SegmentEditorEffect``.
The panel (options, progress, preview, least-confident slices, Show volume) is
:class:`IFSSNetSegmentationLib.gui.PropagatePanel`; the work is the Logic's.
"""
import os

import qt

from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons", "IFSSNetEffect.png")


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    """Propagates the painted slices of the selected segment (or of all visible segments) through the volume."""

    def __init__(self, scriptedEffect):
        scriptedEffect.name = "IFSS-Net"
        scriptedEffect.perSegment = False  # it writes whole segments itself, with one undo state
        scriptedEffect.requireSegments = True
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.panel = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        clonedEffect = effects.qSlicerSegmentEditorScriptedEffect(None)
        clonedEffect.setPythonSource(__file__.replace("\\", "/"))
        return clonedEffect

    def icon(self):
        return qt.QIcon(ICON_PATH) if os.path.exists(ICON_PATH) else qt.QIcon()

    def helpText(self):
        from IFSSNetSegmentationLib.gui import HELP_TEXT

        return f"<html>{HELP_TEXT}</html>"

    def setMRMLDefaults(self):
        from IFSSNetSegmentationLib.gui import SETTINGS

        for name, value in SETTINGS.items():
            self.scriptedEffect.setParameterDefault(name, value)

    def setupOptionsFrame(self):
        from IFSSNetSegmentationLib.gui import PropagatePanel

        frame = qt.QFrame()
        layout = qt.QVBoxLayout(frame)
        layout.setContentsMargins(0, 0, 0, 0)
        # qMRMLSegmentEditorWidget calls setupOptionsFrame and sourceVolumeNodeChanged of every registered effect
        # (notifyEffectsOfSourceVolumeNodeChange), active or not: the estimate (torch, a timed network step) is
        # made only while this effect is the active one; activate() makes it for the volume selected then.
        # confirmCurrentSegmentVisible: as Slicer's effects (Margin, Smoothing, Islands...) ask before editing a hidden
        # selected segment: "make it visible?" (Yes shows it, No goes on, Cancel: 0, no run).
        self.panel = PropagatePanel(layout, self._inputs, saveUndo=self._saveUndo,
                                    settings=self._setting, setSetting=self._setSetting,
                                    estimateAllowed=self.scriptedEffect.active,
                                    confirmVisible=self.scriptedEffect.confirmCurrentSegmentVisible,
                                    editorNode=self.scriptedEffect.parameterSetNode)
        self.scriptedEffect.addOptionsWidget(frame)

    def activate(self):
        if self.panel:
            self.panel.refreshModels()

    def sourceVolumeNodeChanged(self):
        if self.panel:
            self.panel.updateEstimate()

    def masterVolumeNodeChanged(self):
        # Slicer before 5.4 calls only this one; later ones call both (qMRMLSegmentEditorWidget: sourceVolumeNodeChanged
        # then masterVolumeNodeChanged "for backward compatibility"), which timed the estimate twice.
        if not hasattr(self.scriptedEffect.parameterSetNode(), "GetSourceVolumeNode"):
            self.sourceVolumeNodeChanged()

    def deactivate(self):
        if self.panel and self.panel.previewShown:
            self.panel.onApply()  # leaving the effect keeps the preview (undo can still remove it)

    def cleanup(self):
        # Called by qSlicerSegmentEditorScriptedEffect before the effect is deleted (AbstractScriptedSegmentEditorEffect
        # .cleanup): cancel a running job, stop the poll timer, end the worker thread and release the segmentation.
        if self.panel:
            self.panel.cleanup()

    def updateGUIFromMRML(self):
        if self.panel and not self.panel.running:
            self.panel.updateFromSettings()

    # ---- helpers for the panel -----------------------------------------------------------------

    def _setting(self, name, default):
        # parameter() of a name never set logs qCritical "Parameter named ... cannot be found" (and this runs on
        # every updateGUIFromMRML): ask parameterDefined first.
        if not self.scriptedEffect.parameterDefined(name):
            return default
        value = self.scriptedEffect.parameter(name)
        return value if value != "" else default

    def _setSetting(self, name, value):
        self.scriptedEffect.setParameter(name, str(value))

    def _saveUndo(self, segmentationNode):
        # scriptedEffect.saveStateForUndo saves the editor's current segmentation (vtkSlicerSegmentEditorLogic::
        # SaveStateForUndo: its SegmentationHistory). A run's result goes to the node the run started on; if the
        # user has since switched the editor to another segmentation, saving that one would make Undo take back
        # nothing of the result (Cancel on the preview still reverts it).
        editorNode = self.scriptedEffect.parameterSetNode()
        current = editorNode.GetSegmentationNode() if editorNode is not None else None
        if segmentationNode is not None and current is not None and current.GetID() == segmentationNode.GetID():
            self.scriptedEffect.saveStateForUndo()

    def _inputs(self, allVisible):
        editorNode = self.scriptedEffect.parameterSetNode()
        segmentationNode = editorNode.GetSegmentationNode()
        volumeNode = (editorNode.GetSourceVolumeNode() if hasattr(editorNode, "GetSourceVolumeNode")
                      else editorNode.GetMasterVolumeNode())
        if allVisible and segmentationNode is not None:
            display = segmentationNode.GetDisplayNode()
            ids = [sid for sid in segmentationNode.GetSegmentation().GetSegmentIDs()
                   if display is None or display.GetSegmentVisibility(sid)]
        else:
            selected = editorNode.GetSelectedSegmentID()
            ids = [selected] if selected else []
        return volumeNode, segmentationNode, ids
