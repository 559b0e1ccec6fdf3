"""Validation during training: held-out propagation scores, the best network kept, resume, the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ifssnet.compare import load_case as load_compare_case
from ifssnet.errors import Cancelled, InputError
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.phantom import write_phantom
from ifssnet.progress import CancelToken
from ifssnet.train import TrainConfig, train
from ifssnet.validation import ValidationScore, Validator, best_model_path, best_score

from test_train import TINY, _case, one_thread  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("val")
    for i in (0, 1):
        write_phantom(root / f"case{i}", seed=i, shape=(24, 32, 40))
    return root


def _cfg(steps=4, **kw):
    return TrainConfig(epochs=1, steps_per_epoch=steps, run_length=8, checkpoint_every=2, lr=1e-3, **kw)


def _weights_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


class ScriptedValidator:
    """Returns the given Dice at successive validations (the real one is tested below)."""

    def __init__(self, dice):
        self.dice, self.calls = list(dice), []

    def __call__(self, model, step, rank=0, world=1, cancel=None):
        self.calls.append((step, model.training))
        d = self.dice[len(self.calls) - 1]
        return ValidationScore(step, d, 10.0 * len(self.calls), 0.0, {"A": d})


def test_validator_scores_every_segment_of_a_held_out_case(phantoms):
    from ifssnet.model import IFSSNet

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY))
    val = Validator([(phantoms / "case1" / "volume.nrrd", phantoms / "case1" / "reference.seg.nrrd")])
    score = val(net, 7)
    names = set(load_compare_case(phantoms / "case1")[1])
    assert score.step == 7 and set(score.per_segment) == names
    assert 0.0 <= score.dice <= 1.0 and np.isfinite(score.volume_error_pct)
    assert score.dice == pytest.approx(np.mean(list(score.per_segment.values())))
    # the same case in memory scores the same, and a segment subset scores only that segment
    mem = Validator([load_compare_case(phantoms / "case1")], segments=["GL"])(net, 7)
    assert set(mem.per_segment) == {"GL"} and mem.per_segment["GL"] == pytest.approx(score.per_segment["GL"])
    assert score.per_protocol == {}


def test_validation_under_both_protocols_averages_every_row_and_reports_each(phantoms):
    """--val-protocol both: each case is propagated under 3-seeds and under paper; the score is the mean over
    all rows, and each protocol's own means are kept (log, summary, checkpoint)."""
    from ifssnet.model import IFSSNet

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY))
    case = [load_compare_case(phantoms / "case1")]
    one = {p: Validator(case, protocol=p)(net, 3) for p in ("3-seeds", "paper")}
    both = Validator(case, protocol="both")(net, 3)
    assert set(both.per_protocol) == {"3-seeds", "paper"}
    for p, s in one.items():
        assert both.per_protocol[p][0] == pytest.approx(s.dice)
        assert both.per_protocol[p][1] == pytest.approx(s.volume_error_pct)
    assert both.dice == pytest.approx((one["3-seeds"].dice + one["paper"].dice) / 2)   # as many rows each
    assert "3-seeds" in both.summary() and "paper" in both.summary()
    assert ValidationScore.from_dict(both.to_dict()) == both
    assert Validator(case, protocol="paper,3-seeds").protocols == ["paper", "3-seeds"]


def test_best_of_is_the_score_training_keeps_and_log_records_read_back():
    from ifssnet.validation import best_of

    s = [ValidationScore(i, d, 1.0, 0.0) for i, d in enumerate([float("nan"), 0.5, 0.7, 0.7, 0.6])]
    assert best_of(s).step == 2 and best_of([]) is None           # the earlier of equals; NaN loses
    full = ValidationScore(4, 0.6, 12.5, 3.0, {"GM": 0.6}, {"paper": (0.6, 12.5)})
    assert ValidationScore.from_log_record(full.log_record()) == full
    assert ValidationScore.from_log_record({"step": 2, "val_dice": 0.4}).per_segment == {}


def test_validation_does_not_change_the_training(tmp_path, phantoms, one_thread):
    """Dropout back on and no random numbers drawn: a validated run trains the very same weights."""
    val = Validator([load_compare_case(phantoms / "case1")])
    scores = []
    train([_case(0)], tmp_path / "v.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(), validator=val,
          val_every=2, on_validation=scores.append)
    train([_case(0)], tmp_path / "p.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg())
    assert [s.step for s in scores] == [2, 4]
    assert _weights_equal(load_checkpoint(tmp_path / "v.pt")[0], load_checkpoint(tmp_path / "p.pt")[0])


def test_the_best_network_by_dice_is_kept_and_resume_remembers_it(tmp_path, one_thread):
    val = ScriptedValidator([0.3, 0.7, 0.5])
    train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(6), validator=val)
    assert [s for s, _ in val.calls] == [2, 4, 6] and all(training for _, training in val.calls)
    best = best_score(best_model_path(tmp_path / "m.pt"))
    assert best.step == 4 and best.dice == 0.7
    train([_case(0)], tmp_path / "four.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(4))
    assert _weights_equal(load_checkpoint(tmp_path / "m.best.pt")[0], load_checkpoint(tmp_path / "four.pt")[0])
    history = load_checkpoint(tmp_path / "m.pt")[2]["training"]["validation"]["history"]
    assert [h["dice"] for h in history] == [0.3, 0.7, 0.5]

    # Killed after the step-2 validation and checkpoint; the resumed run must not take a worse network
    # (0.5 at step 4) as the best just because the earlier 0.6 was scored before the kill.
    token = CancelToken()
    first = ScriptedValidator([0.6])
    with pytest.raises(Cancelled):
        train([_case(0)], tmp_path / "r.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(6), validator=first,
              progress=lambda stage, done, total: done == 3 and token.cancel(), cancel=token)
    train([_case(0)], tmp_path / "r.pt", resume=tmp_path / "r.ckpt.pt", validator=ScriptedValidator([0.5, 0.55]))
    best = best_score(best_model_path(tmp_path / "r.pt"))
    assert best.step == 2 and best.dice == 0.6
    history = load_checkpoint(tmp_path / "r.pt")[2]["training"]["validation"]["history"]
    assert [(h["step"], h["dice"]) for h in history] == [(2, 0.6), (4, 0.5), (6, 0.55)]


def test_a_fine_tune_scores_its_starting_network_first_and_keeps_it_where_no_step_beats_it(tmp_path, one_thread):
    """Step 0 is the base model: a fine-tune that only loses on validation leaves MODEL.best.pt = the base's weights;
    one that wins keeps its own step. A fresh network and a resumed run are not scored at step 0."""
    train([_case(0)], tmp_path / "base.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(2))
    worse = ScriptedValidator([0.8, 0.6, 0.7])
    train([_case(1)], tmp_path / "ft.pt", base_model=tmp_path / "base.pt", cfg=_cfg(4), validator=worse)
    assert [s for s, _ in worse.calls] == [0, 2, 4]
    best = best_score(best_model_path(tmp_path / "ft.pt"))
    assert best.step == 0 and best.dice == 0.8
    assert _weights_equal(load_checkpoint(tmp_path / "ft.best.pt")[0], load_checkpoint(tmp_path / "base.pt")[0])
    assert not _weights_equal(load_checkpoint(tmp_path / "ft.pt")[0], load_checkpoint(tmp_path / "base.pt")[0])
    better = ScriptedValidator([0.5, 0.6, 0.7])
    train([_case(1)], tmp_path / "ft2.pt", base_model=tmp_path / "base.pt", cfg=_cfg(4), validator=better)
    assert best_score(best_model_path(tmp_path / "ft2.pt")).step == 4
    fresh = ScriptedValidator([0.5, 0.6])
    train([_case(1)], tmp_path / "new.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(4), validator=fresh)
    assert [s for s, _ in fresh.calls] == [2, 4]


def test_a_cancel_during_validation_stops_it_between_cases_and_writes_nothing_new(tmp_path, phantoms, monkeypatch,
                                                                                 one_thread):
    """Cancelled while the first of two validation cases is propagated: the second is not propagated, and the
    step's best model and checkpoint are not written (they come after the validation)."""
    import ifssnet.compare

    token, propagated = CancelToken(), []
    real = ifssnet.compare.compare

    def compare_then_cancel(*args, **kwargs):
        rows = real(*args, **kwargs)
        propagated.append(kwargs.get("cancel"))
        token.cancel()                                # the user clicks Cancel as the first case ends
        return rows

    monkeypatch.setattr(ifssnet.compare, "compare", compare_then_cancel)
    val = Validator([load_compare_case(phantoms / "case0"), load_compare_case(phantoms / "case1")])
    with pytest.raises(Cancelled):
        train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(2), validator=val,
              val_every=1, cancel=token)
    assert propagated == [token]                      # one case, and its propagation could be cancelled too
    assert list(tmp_path.iterdir()) == []


def test_a_validation_shows_its_cases_in_the_training_progress(tmp_path, phantoms, one_thread):
    """train passes its progress to a Validator, which reports "validating" once per case (a validation on
    full-size sweeps takes minutes); a validator without a progress parameter still works (ScriptedValidator)."""
    from ifssnet.validation import STAGE

    seen = []
    val = Validator([load_compare_case(phantoms / "case0"), load_compare_case(phantoms / "case1")], segments=["GL"])
    train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(2), validator=val,
          val_every=2, progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert [s for s in seen if s[0] == STAGE] == [(STAGE, 0, 2), (STAGE, 1, 2), (STAGE, 2, 2)]
    train([_case(0)], tmp_path / "n.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(2),
          validator=ScriptedValidator([0.5]), val_every=2, progress=lambda *a: None)


def test_validation_files_are_checked_before_training(tmp_path, phantoms):
    from ifssnet.io import AnnotatedSlices, read_segmentation, write_segmentation

    with pytest.raises(InputError, match="does not exist"):
        Validator([(tmp_path / "none.nrrd", tmp_path / "none.seg.nrrd")])
    with pytest.raises(InputError, match="no segment named XX"):
        Validator([(phantoms / "case1" / "volume.nrrd", phantoms / "case1" / "reference.seg.nrrd")], segments=["XX"])
    with pytest.raises(InputError, match="protocol"):
        Validator([load_compare_case(phantoms / "case1")], protocol="every-slice")
    with pytest.raises(InputError, match="protocol"):
        Validator([load_compare_case(phantoms / "case1")], protocol="3-seeds,papr")
    seg = read_segmentation(phantoms / "case1" / "reference.seg.nrrd")
    seg.segments[0].annotated = AnnotatedSlices(0, (3, 4, 5))
    write_segmentation(seg, tmp_path / "sparse.seg.nrrd")
    with pytest.raises(InputError, match="painted on some slices only, in one group"):   # nothing left to score
        Validator([(phantoms / "case1" / "volume.nrrd", tmp_path / "sparse.seg.nrrd")])
    # An empty reference segment (no seeds to cut) is refused here, not at the first validation, mid-training.
    seg = read_segmentation(phantoms / "case1" / "reference.seg.nrrd")
    seg.segments[0].mask = np.zeros_like(seg.segments[0].mask)
    write_segmentation(seg, tmp_path / "empty.seg.nrrd")
    name = seg.segments[0].name
    with pytest.raises(InputError, match=f"Segment '{name}' of validation case .*empty.seg.nrrd is empty") as err:
        Validator([(phantoms / "case1" / "volume.nrrd", tmp_path / "empty.seg.nrrd")])
    assert "Segment Editor" in err.value.todo
    volume, refs, spacing = load_compare_case(phantoms / "case1")
    with pytest.raises(InputError, match=f"Segment '{name}' of validation case in-memory case is empty"):
        Validator([(volume, {**refs, name: np.zeros_like(refs[name])}, spacing)])
    others = [n for n in refs if n != name]
    Validator([(volume, {**refs, name: np.zeros_like(refs[name])}, spacing)], segments=others)   # not scored: fine


class RecordingValidator(Validator):
    """The real validator; it also records which cases this process read and the scores it returned."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.loaded, self.scores = [], []

    def _load(self, case):
        self.loaded.append(str(case[0]))
        return super()._load(case)

    def __call__(self, model, step, rank=0, world=1, cancel=None):
        score = super().__call__(model, step, rank=rank, world=world, cancel=cancel)
        self.scores.append(score.to_dict())
        return score


def _ddp_val_worker(rank, world, init_file, root, out_dir):
    import os

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        val = RecordingValidator([(f"{root}/case{i}/volume.nrrd", f"{root}/case{i}/reference.seg.nrrd")
                                  for i in (0, 1)])
        train([_case(0), _case(1)], os.path.join(out_dir, "ddp.pt"), model_config=IFSSNetConfig(**TINY),
              cfg=_cfg(2), rank=rank, world=world, validator=val, val_every=2)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"loaded": val.loaded, "scores": val.scores}, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)                                  # as test_train._ddp_worker: no gloo teardown at exit


def test_distributed_validation_shares_the_cases_and_every_rank_gets_one_processs_score(tmp_path, phantoms):
    """Rank r propagates cases r, r + 2, ...; the gathered score equals a single process's on the same weights."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_val_worker, args=(2, str(tmp_path / "init"), str(phantoms), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["loaded"] for r in ranks] == [[str(phantoms / "case0" / "volume.nrrd")],
                                            [str(phantoms / "case1" / "volume.nrrd")]]
    assert ranks[0]["scores"][0]["step"] == 2
    for key in ("dice", "volume_error_pct", "per_segment"):
        assert ranks[0]["scores"][0][key] == ranks[1]["scores"][0][key]
    # the validated network (step 2 is the last) scored by one process on both cases
    one = Validator([(phantoms / f"case{i}" / "volume.nrrd", phantoms / f"case{i}" / "reference.seg.nrrd")
                     for i in (0, 1)])(load_checkpoint(tmp_path / "ddp.pt")[0], 2)
    assert ranks[0]["scores"][0]["dice"] == pytest.approx(one.dice, abs=1e-6)
    assert ranks[0]["scores"][0]["per_segment"] == pytest.approx(one.per_segment, abs=1e-6)
    assert best_score(best_model_path(tmp_path / "ddp.pt")).dice == pytest.approx(one.dice, abs=1e-6)


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "ifssnet.cli", "train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
                                                       "PATH": "/usr/bin:/bin"})


def test_train_cli_validates_logs_and_names_the_best_model(tmp_path, phantoms):
    common = ["--size", "32", "--width-mult", "0.25", "--epochs", "1", "--steps", "2", "--run-length", "8"]
    r = _cli([str(phantoms / "case0"), "--val", str(phantoms / "case1"), "--val-every", "1",
              "--out", str(tmp_path / "m.pt"), "--log", str(tmp_path / "log.jsonl"), "--ema", "0.5",
              "--warmup", "2", *common], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    config = load_checkpoint(tmp_path / "m.pt")[2]["training"]["config"]
    assert (config["ema"], config["warmup"]) == (0.5, 2)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = [x for x in records if "val_dice" in x]
    assert [x["step"] for x in val] == [1, 2] and all("loss" not in x for x in val)
    assert [x["step"] for x in records if "loss" in x] == [1, 2]
    best = max(val, key=lambda x: x["val_dice"])
    assert f"at step {best['step']}: {tmp_path / 'm.best.pt'}" in r.stdout
    assert "No training step beat" not in r.stdout              # a new network: nothing to keep instead
    assert "validation Dice" in r.stderr                       # one summary line per validation
    r = _cli([str(phantoms / "case0"), "--val", str(phantoms / "case0"), "--out", str(tmp_path / "x.pt"), *common],
             tmp_path)
    assert r.returncode != 0 and "also a training case" in r.stderr and not (tmp_path / "x.pt").exists()


def test_train_cli_says_when_no_step_beat_the_starting_network(tmp_path, phantoms, monkeypatch, capsys, one_thread):
    from ifssnet import train_cli
    from ifssnet.cli import main

    train([_case(0)], tmp_path / "base.pt", model_config=IFSSNetConfig(**TINY), cfg=_cfg(2))
    monkeypatch.setattr(train_cli, "_validator", lambda *a, **k: ScriptedValidator([0.9, 0.2, 0.3]))
    args = [str(phantoms / "case0"), "--val", str(phantoms / "case1"), "--val-every", "1", "--epochs", "1",
            "--steps", "2", "--from", str(tmp_path / "base.pt")]
    assert main(["train", *args, "--out", str(tmp_path / "ft.pt")]) == 0
    out = capsys.readouterr().out
    assert f"at step 0: {tmp_path / 'ft.best.pt'}" in out
    assert f"No training step beat {tmp_path / 'base.pt'} on validation" in out and "Keep using" in out
    monkeypatch.setattr(train_cli, "_validator", lambda *a, **k: ScriptedValidator([0.1, 0.2, 0.3]))
    assert main(["train", *args, "--out", str(tmp_path / "ft2.pt")]) == 0
    out = capsys.readouterr().out
    assert "at step 2:" in out and "No training step beat" not in out


def test_the_leak_loss_on_a_new_full_network_comes_with_a_note(tmp_path, phantoms, capsys):
    """--end-weight from a new network in full mode made every mask empty (model card, session 35): the command says
    so and trains on; a fine-tune, or the loss left off, gets no note."""
    from ifssnet.cli import main

    new = [str(phantoms / "case0"), "--epochs", "1", "--steps", "1", "--size", "32", "--width-mult", "0.25",
           "--run-length", "8"]
    assert main(["train", *new, "--end-weight", "1", "--out", str(tmp_path / "a.pt")]) == 0
    assert "Note: --end-weight 1 on a new network" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "a.pt")[2]["training"]["config"]["end_weight"] == 1.0
    assert main(["train", *new, "--out", str(tmp_path / "b.pt")]) == 0
    assert "--end-weight" not in capsys.readouterr().err
    assert main(["train", str(phantoms / "case0"), "--epochs", "1", "--steps", "1", "--from", str(tmp_path / "b.pt"),
                 "--end-weight", "16", "--out", str(tmp_path / "c.pt")]) == 0
    assert "on a new network" not in capsys.readouterr().err


def test_fine_tuning_takes_the_base_models_recipe_unless_an_option_is_given(tmp_path, phantoms, capsys):
    """A network trained with the Dice loss + cross-entropy, the gradient through the fed-back mask, on runs of 8
    (the shipped recipe) is fine-tuned that way, not with the command line's defaults; given options win."""
    from ifssnet.cli import main

    base_cfg = TrainConfig(epochs=1, steps_per_epoch=1, run_length=8, batch=2, bce_weight=1.0, learn_tversky=False,
                           feedback_grad=True, strides=[1, 3], checkpoint_every=1)
    train([_case(0)], tmp_path / "base.pt", model_config=IFSSNetConfig(**TINY), cfg=base_cfg)
    common = [str(phantoms / "case0"), "--epochs", "1", "--steps", "1", "--from", str(tmp_path / "base.pt")]
    assert main(["train", *common, "--out", str(tmp_path / "ft.pt")]) == 0
    err = capsys.readouterr().err
    assert "--run-length 8 --batch 2 --bce-weight 1.0 --fixed-tversky --feedback-grad --strides 1,3" in err
    got = load_checkpoint(tmp_path / "ft.pt")[2]["training"]["config"]
    assert (got["run_length"], got["batch"], got["bce_weight"], got["learn_tversky"], got["feedback_grad"],
            got["strides"]) == (8, 2, 1.0, False, True, [1, 3])
    assert (got["lr"], got["lr_final"]) == (1e-5, pytest.approx(1e-6))   # a fine-tune of a trained network: 1e-5 ...
    assert "Fine-tune: learning rate 1e-05" in err and "Give --lr 1e-4 for the paper's" in err
    assert main(["train", *common, "--out", str(tmp_path / "ft1.pt"), "--lr", "1e-4"]) == 0
    assert "Fine-tune: learning rate" not in capsys.readouterr().err       # ... unless --lr is given
    assert load_checkpoint(tmp_path / "ft1.pt")[2]["training"]["config"]["lr"] == 1e-4
    assert main(["train", *common, "--out", str(tmp_path / "ft2.pt"), "--no-feedback-grad", "--run-length", "12",
                 "--no-fixed-tversky", "--strides", "1", "--tversky-beta", "0.6"]) == 0
    meta = load_checkpoint(tmp_path / "ft2.pt")[2]["training"]
    got = meta["config"]
    assert (got["run_length"], got["batch"], got["bce_weight"], got["learn_tversky"], got["feedback_grad"],
            got["strides"], got["tversky_beta"]) == (12, 2, 1.0, True, False, [1], 0.6)
    assert 0.5 < meta["beta"] < 0.7                            # started at 0.6, learned for one step
    assert "trained with: --batch 2 --bce-weight 1.0 (give" in capsys.readouterr().err   # only what was not given
    common[-1] = str(tmp_path / "ft2.pt")
    assert main(["train", *common, "--out", str(tmp_path / "ft3.pt")]) == 0    # a fine-tune of it keeps the beta
    assert "--tversky-beta 0.6" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "ft3.pt")[2]["training"]["config"]["tversky_beta"] == 0.6
    assert main(["train", *common, "--mode", "fewshot", "--out", str(tmp_path / "fs.pt")]) == 0   # few-shot: 0.5
    err = capsys.readouterr().err
    assert "(give an option" in err and "--tversky-beta 0.6 (give" not in err     # not among the inherited
    assert "Tversky beta 0.5, not the base model's 0.6" in err and "Give --tversky-beta 0.6 to keep it" in err
    assert load_checkpoint(tmp_path / "fs.pt")[2]["training"]["config"]["tversky_beta"] == 0.5
    assert main(["train", str(phantoms / "case0"), "--epochs", "1", "--steps", "1", "--size", "32",
                 "--width-mult", "0.25", "--run-length", "8", "--out", str(tmp_path / "new.pt")]) == 0
    err = capsys.readouterr().err
    assert "Fine-tuning with the recipe" not in err and "Fine-tune: learning rate" not in err   # a new network:
    got = load_checkpoint(tmp_path / "new.pt")[2]["training"]["config"]                         # the defaults
    assert (got["lr"], got["lr_final"]) == (1e-4, 1e-5)
    default = TrainConfig()
    assert (got["batch"], got["bce_weight"], got["learn_tversky"], got["feedback_grad"], got["strides"]) == \
        (default.batch, default.bce_weight, default.learn_tversky, default.feedback_grad, default.strides)
