"""One training step on a batch of runs: the windows' loss, the burn-in, and the two TBPTT updates.

:func:`windows_loss` slides the window over a run as propagation does and scores each window (eq. 3-4 of the
paper, with the targets of ``full`` or ``fewshot`` mode); :func:`burn_in` and :func:`burn_in_each` propagate a
run's first slices without gradient, as inference does; :func:`train_step` updates the network after each half
of the rest (TBPTT); :func:`image_step` is ``--mode image``'s update. The loop, the schedule and the
checkpoints are :mod:`ifssnet.train`'s, whose :class:`~ifssnet.train.TrainConfig` every function here reads.
Tensors: runs are (B, L, S, S) float (image, mask) and bool (B, L) (annotated slices), S the working size.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional, Sequence

from .distributed import average_gradients
from .errors import InputError
from .extra_losses import annotated_area, image_head_loss, leak_loss
from .mask_noise import box_mask, jitter_mask

if TYPE_CHECKING:  # pragma: no cover
    from .train import TrainConfig


def windows_loss(model, loss_fn, image, mask, known, cfg: TrainConfig, state=None, first_prev=None,
                 stride: int = 1, segments=None, seed_area=None, anchors=None, first_pred=None, start: int = 0):
    """Slide windows over one run and return (loss, state, the next window's mask input).

    ``image``, ``mask``: torch (B, L, S, S) float; ``known``: torch bool (B, L). Windows start at slices
    ``stride, 2 stride, ...``; the first covers slices stride..stride+w-1 and its mask input is
    ``first_prev`` or the annotation of slices 0..w-1 (the window ``stride`` slices back).
    Returns the mean over windows of (1 - TI), so ``loss.backward()`` is eq. (4) without the L2 term.
    From ``cfg``: ``mode`` and ``refeed_every`` (the targets and re-anchoring), ``mask_jitter`` (probability,
    per window, that the mask input is deformed by :func:`ifssnet.mask_noise.jitter_mask`, within
    ``jitter_shift`` and ``jitter_radius``), ``jitter_first_only`` (deform only the run's first mask input, the annotation;
    ``first_prev`` is None, not the network's own predictions) and ``feedback_grad``.
    ``stride``: slices between windows (1..w, checked by :func:`train`), as propagation's presets; the
    ConvLSTM carries the state of slice ``stride - 1`` of each window.
    ``cfg.feedback_grad``: the next window's mask input keeps its gradient, so a window's loss also trains the
    windows before it through the mask they fed forward (within this part of the run), as PG-Net's chains
    are trained; by default the mask input is detached and only the ConvLSTM state carries gradient. A
    network trained with detached feedback is never taught what its own errors do to the next window.
    ``cfg.image_aux``: adds that weight x the image-only head's loss
    (:func:`ifssnet.extra_losses.image_head_loss`) on each window; ``segments`` (torch long (B,)) are the runs' channels of that head.
    ``cfg.end_weight``: adds that weight x :func:`ifssnet.extra_losses.leak_loss` on each window (in ``fewshot``
    mode it counts the windows labelled empty on every slice: painted, or ``--empty-past-ends``);
    ``seed_area`` (torch (B,), pixels over w slices) is the annotated area of the whole run's first window, which a later part of the run (a
    TBPTT half, the part after a burn-in) no longer holds; default: ``mask[:, 0:w]``'s.
    ``anchors``: torch bool (B, L), the slices a ``fewshot`` run re-anchors its mask input on (``--anchor painted``:
    the painted ones); default ``known``. Targets are ``known``'s either way.
    ``first_pred`` (B, w, S, S) and ``start``, for a part that continues a run (the second TBPTT half, the part
    after a burn-in): the prediction of the window before this part's first window (its few-shot pseudo-labels for
    the slices they share; None: none, as at a run's start) and where this part starts in the run (slices), so
    that the truth is re-fed every ``refeed_every`` windows of the whole run, not of each part.
    """
    import torch

    B, L, S, _ = image.shape
    w = model.config.window
    overlap = w - stride                  # slices a window shares with the one before it
    run_start = first_prev is None        # this part begins the run: its first mask input is the annotation
    prev = mask[:, 0:w] if run_start else first_prev
    prev_pred = None if first_pred is None else first_pred.detach()   # previous window's prediction (B, w, S, S)
    losses, aux = [], []
    leak = bool(cfg.end_weight)           # fewshot: only windows labelled empty on every slice count (leak_loss)
    if leak and seed_area is None:
        seed_area = annotated_area(mask, w)
    for t in range(stride, L - w + 1, stride):
        img = image[:, t:t + w][:, None]
        may_jitter = not cfg.jitter_first_only or (run_start and t == stride)
        if cfg.mask_jitter and may_jitter and bool(torch.rand(()) < cfg.mask_jitter):
            prev = jitter_mask(prev, cfg.jitter_shift, cfg.jitter_radius)
        if cfg.mask_box and bool(torch.rand(()) < cfg.mask_box):
            prev = box_mask(prev, cfg.jitter_shift)
        feats = model.encode_image(img)
        logits, state = model.forward_from_features(feats, prev[:, None], state, carry_index=stride - 1)
        prob = torch.softmax(logits, dim=1)[:, 1]                     # (B, w, S, S)
        kn = known[:, t:t + w]                                        # (B, w)
        if cfg.image_aux:
            aux.append(image_head_loss(model, feats, segments, mask[:, t:t + w], kn))
        if cfg.mode == "full":
            target, weight = mask[:, t:t + w], torch.ones_like(kn, dtype=prob.dtype)
        else:
            target = mask[:, t:t + w].clone()
            weight = kn.to(prob.dtype)
            if prev_pred is not None and overlap > 0:   # pseudo-labels: the previous window's view of
                pseudo = (prev_pred[:, stride:] > 0.5).to(prob.dtype)   # slices t..t+overlap-1
                unk = ~kn[:, :overlap]
                target[:, :overlap][unk] = pseudo[unk]
                weight[:, :overlap][unk] = 1.0
        losses.append(loss_fn(prob, target, weight[:, :, None, None].expand_as(prob), from_logits=False))
        if leak:
            losses[-1] = losses[-1] + cfg.end_weight * leak_loss(prob, target, kn, seed_area)
        pred = prob if cfg.feedback_grad else prob.detach()
        # Next mask input: this prediction, re-anchored on annotated slices (and the truth every N windows).
        nxt = pred.clone()
        refeed = cfg.refeed_every and (start + t) % cfg.refeed_every == 0
        if cfg.mode == "fewshot":
            anchor = kn if anchors is None else anchors[:, t:t + w]
        else:
            anchor = kn if refeed else torch.zeros_like(kn)
        nxt[anchor] = mask[:, t:t + w][anchor]
        prev = nxt
        prev_pred = pred.detach()
    if not losses:
        raise InputError("A training run is shorter than two windows.", "Use a longer --run-length.")
    loss = torch.stack(losses).mean()
    if aux:
        loss = loss + cfg.image_aux * torch.stack(aux).mean()
    return loss, state, prev


def burn_in(model, loss_fn, image, mask, known, cfg: TrainConfig, slices: int, stride: int = 1, anchors=None):
    """Propagate the first ``slices`` slices of a run as inference does: no gradient, dropout off,
    the network's own predictions fed forward from the annotation of the first w slices, never re-anchored
    on the truth (in ``fewshot`` mode on annotated slices, as propagation on painted ones).

    ``image``, ``mask``: torch (B, L, S, S); ``known``, ``anchors``: bool (B, L) (see :func:`windows_loss`;
    ``anchors`` default ``known``). Returns ``(offset, state, prev)``:
    the trained part of the run starts at slice ``offset`` (``slices`` rounded down to a multiple of
    ``stride``), with the ConvLSTM ``state`` and the mask input ``prev`` (B, w, S, S) that the burn-in
    left there, both detached. With ``slices`` 0 it is ``(0, None, None)``: the run starts on the truth.
    Training draws ``slices`` per step between 0 and ``cfg.burn_in`` (:func:`train`), so the trained windows
    lie anywhere from the annotation to ``cfg.burn_in + cfg.run_length`` slices past it.

    Why: a run that starts on the truth shows the network masks a few windows from the annotation,
    nearly right. At inference the mask input has drifted over tens of windows, and past a muscle's
    end it is a leak. Training windows after a burn-in see those inputs with true targets, so the
    network is taught to pull a drifted mask back onto the image's muscle, or to let it vanish.
    """
    import torch

    from .model.convlstm import detach_state

    w = model.config.window
    offset = stride * (min(int(slices), image.shape[1] - w - stride) // stride)
    if offset < stride:
        return 0, None, None
    quiet = replace(cfg, refeed_every=0, mask_jitter=0.0, mask_box=0.0, image_aux=0.0, end_weight=0.0,
                    feedback_grad=False)           # its loss is not used: no terms that only add to it
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, state, prev = windows_loss(model, loss_fn, image[:, :offset + w], mask[:, :offset + w],
                                          known[:, :offset + w], quiet, stride=stride,
                                          anchors=(known if anchors is None else anchors)[:, :offset + w])
    finally:
        model.train(was_training)
    return offset, detach_state(state), prev.detach()


def burn_in_each(model, loss_fn, image, mask, known, cfg: TrainConfig, offsets: Sequence[int], length: int,
                 stride: int = 1, anchors=None):
    """:func:`burn_in` with its own length per run (``--reach``): run i is propagated without gradient over its
    first ``offsets[i]`` slices (each a multiple of ``stride``, at least ``stride``), then cut to the ``length``
    slices from where its burn-in ended. ``image``, ``mask``: torch (B, L, S, S); ``known``, ``anchors``: bool (B, L).
    Returns the cut ``(image, mask, known, anchors)``, each (B, length, ...) (``anchors`` default ``known``),
    and the batched ``(state, prev)``."""
    import torch

    from .network_runner import index_state, stack_states

    anchors = known if anchors is None else anchors
    parts = [burn_in(model, loss_fn, image[i:i + 1], mask[i:i + 1], known[i:i + 1], cfg, o, stride,
                     anchors[i:i + 1]) for i, o in enumerate(offsets)]
    cut = [torch.stack([x[i, off:off + length] for i, (off, _, _) in enumerate(parts)])
           for x in (image, mask, known, anchors)]
    state = stack_states([index_state(st, 0) for _, st, _ in parts], image.device)   # refuses a run not burnt in
    prev = torch.cat([pv for _, _, pv in parts])
    return (*cut, state, prev)


def train_step(model, loss_fn, optimizer, run_image, run_mask, run_known, cfg: TrainConfig, stride: int = 1,
               segments=None, burn: int = 0, offsets: Optional[Sequence[int]] = None, anchors=None):
    """One TBPTT step on a batch of runs (B, L, S, S): two updates, one after each half of the run.
    ``segments``: long (B,), the runs' channels of the image-only head (with ``cfg.image_aux``).
    ``anchors``: bool (B, L), where a ``fewshot`` run re-anchors its mask input (:func:`windows_loss`); default ``run_known``.

    The second half starts where the first half's last window did, so its first window is that
    window moved by ``stride`` slices, as in one unbroken run. With ``burn`` > 0 the run's first ``burn``
    slices are propagated without gradient first (:func:`burn_in`) and the halves split the rest.
    ``offsets`` (``--reach``; one per run, from :func:`ifssnet.reach.reach_offsets`) burn each run in over its
    own length instead, and the halves split the ``cfg.run_length`` slices after it.
    """
    from .model.convlstm import detach_state

    w = model.config.window
    anchors = run_known if anchors is None else anchors
    seed_area = annotated_area(run_mask, w) if cfg.end_weight else None   # every part's leak_loss measures against it
    if offsets is not None:
        run_image, run_mask, run_known, anchors, state, prev = burn_in_each(
            model, loss_fn, run_image, run_mask, run_known, cfg, offsets, cfg.run_length, stride, anchors)
    else:
        offset, state, prev = burn_in(model, loss_fn, run_image, run_mask, run_known, cfg, burn, stride, anchors)
        run_image, run_mask, run_known, anchors = (x[:, offset:] for x in (run_image, run_mask, run_known, anchors))
    L = run_image.shape[1]
    half = max(w + stride, (L + w) // 2)
    last = stride * ((half - w) // stride)          # where the first half's last window starts
    halves = [(0, half)] + ([(last, L)] if L - last >= w + stride else [])
    total = 0.0
    # The prediction the window before each part made (the burn-in's last, then the first half's last): on the
    # slices a fewshot window leaves unannotated, the mask input fed forward is that prediction itself (the
    # re-anchoring only replaces annotated slices), so it gives the part's first window its pseudo-labels.
    pred = prev if cfg.mode == "fewshot" else None
    for a, b in halves:
        optimizer.zero_grad(set_to_none=True)
        loss, state, prev = windows_loss(model, loss_fn, run_image[:, a:b], run_mask[:, a:b], run_known[:, a:b],
                                         cfg, state, first_prev=prev, stride=stride, segments=segments,
                                         seed_area=seed_area, anchors=anchors[:, a:b], first_pred=pred, start=a)
        pred = prev if cfg.mode == "fewshot" else None
        _apply_update(optimizer, loss, cfg)
        state = detach_state(state)
        prev = prev.detach()
        total += float(loss.detach()) / len(halves)
    return total


def image_step(model, optimizer, image, mask, known, segments, cfg: TrainConfig) -> float:
    """``--mode image``: one update of the shared encoder and the image-only head alone, on a batch of
    windows ``image``, ``mask`` (B, w, S, S), ``known`` bool (B, w), ``segments`` long (B,) head channels.

    The loss is :func:`ifssnet.extra_losses.image_head_loss`: find each window's segment in the image, with no
    mask input.
    A pretraining stage: the paper's network trained end to end was measured to ignore the image (its
    encoder's features do not locate the muscles), so the encoder first learns to see them; a ``full``
    run from this checkpoint (with ``--image-aux``, to keep them) then trains the rest.
    """
    optimizer.zero_grad(set_to_none=True)
    loss = image_head_loss(model, model.encode_image(image[:, None]), segments, mask, known)
    _apply_update(optimizer, loss, cfg)
    return float(loss.detach())


def _apply_update(optimizer, loss, cfg: TrainConfig) -> None:
    """Backward, average the gradients over ranks, clip them to ``cfg.grad_clip``, and step."""
    import torch

    loss.backward()
    average_gradients(optimizer)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_([q for g in optimizer.param_groups for q in g["params"]], cfg.grad_clip)
    optimizer.step()
