"""Review 41b (the researcher's journey: fine-tuning on a few annotated volumes of their own, then comparing):
each test failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

from ifssnet.errors import InputError
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

K, J, I = 20, 40, 24
GEOMETRY = Geometry(spacing=(0.3, 0.3, 2.0), origin=(0.0, 0.0, 0.0))    # anisotropic: 2 mm between slices


def _box(k0=2, k1=18):
    m = np.zeros((K, J, I), np.uint8)
    m[k0:k1, 10:25, 5:18] = 1
    return m


def _write_case(folder, masks, dtype=np.int16):
    """volume.nrrd (int16 with negatives) and annotation.seg.nrrd in ``folder``; (volume, annotation) paths."""
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.random.default_rng(0).integers(-1000, -500, (K, J, I)).astype(dtype)
    for m in masks.values():
        vol[m > 0] += 300
    write_volume(Image(vol, GEOMETRY), folder / "volume.nrrd")
    write_segmentation(segmentation_from_masks(masks, GEOMETRY), folder / "annotation.seg.nrrd")
    return folder / "volume.nrrd", folder / "annotation.seg.nrrd"


def test_a_validation_annotation_painted_on_some_slices_without_a_tag_is_refused(tmp_path):
    """A segmentation painted on a few slices in Slicer and saved (no painted-slice tag) trains as a sparse
    annotation (``dataset._untagged_annotation``), but as a validation case it was taken for a complete reference:
    every propagated slice between the painted ones was scored against "no muscle", so the validation Dice, and the
    best network kept as OUT.best.pt, were chosen on wrong scores. It is refused like a tagged sparse one."""
    from ifssnet.validation import Validator

    sparse = _box()
    keep = np.zeros(K, bool)
    keep[[3, 4, 5, 12, 13, 14]] = True
    sparse[~keep] = 0
    case = _write_case(tmp_path / "painted", {"tendon": sparse})
    with pytest.raises(InputError, match="painted on some slices only") as err:
        Validator([case])
    assert "tendon" in str(err.value) and "annotation.seg.nrrd" in str(err.value)
    with pytest.raises(InputError, match="painted on some slices only"):      # Slicer's nodes, held in memory
        Validator([(np.zeros((K, J, I), np.int16), {"tendon": sparse}, (2.0, 0.3, 0.3))])
    # a complete annotation, and a sparse segment that is not validated, are accepted as before
    Validator([_write_case(tmp_path / "complete", {"tendon": _box()})])
    Validator([_write_case(tmp_path / "both", {"tendon": _box(), "notes": sparse})], segments=["tendon"])
