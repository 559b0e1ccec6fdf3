"""``--draw paint`` (``auto``'s choice in few-shot mode): a step draws its run's case in proportion to the case's
painted slices.

Drawn uniformly (``--draw case``, the prototype's, and ``auto``'s in full supervision), the cases holding a single
painted group per muscle outweigh the densely painted ones once they join the decremental pool, and the paper's CPU
recipe collapsed to (nearly) empty masks on 9 of 10 runs; drawn by paint, on 1 of 4 (model card, "Session 45")."""
import numpy as np
import pytest

from ifssnet.dataset import Case
from ifssnet.errors import InputError
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.train import TrainConfig, _draw_case, painted_weights, train

TINY = dict(size=32, width_mult=0.25)


def _case(name, known_slices, K=40, muscles=("A",)):
    rng = np.random.default_rng(len(name))
    img = rng.normal(size=(K, 32, 32)).astype(np.float16)
    m = np.zeros((K, 32, 32), np.uint8)
    m[4:36, 8:20, 8:22] = 1                       # the muscle on slices 4-35
    img[m > 0] += 1.5
    known = np.zeros(K, bool)
    known[list(known_slices)] = True
    return Case(name, img, {n: m.copy() for n in muscles}, {n: known.copy() for n in muscles})


def test_painted_weights_count_painted_slices_that_hold_a_muscle_per_segment():
    dense = _case("dense", range(0, 40))          # 40 painted, 32 of them on the muscle
    sparse = _case("sparse", (10, 11, 12))        # 3 on the muscle
    empty_paint = _case("ends", (0, 1, 2, 37, 38, 39))   # painted only where there is no muscle: 0
    two = _case("two", (10, 11, 12), muscles=("A", "B"))  # 3 slices, each painted for two muscles: 6
    w = painted_weights([dense, sparse, empty_paint, two])
    assert w == pytest.approx(np.array([32, 3, 0, 6]) / 41)
    assert painted_weights([empty_paint, empty_paint]) == pytest.approx([0.5, 0.5])   # none: alike


def test_paint_draws_in_proportion_within_the_pool_and_case_draws_alike():
    weights = np.array([0.6, 0.3, 0.1, 0.0])
    rng = np.random.default_rng(0)
    drawn = np.bincount([_draw_case(4, rng, weights) for _ in range(20000)], minlength=4) / 20000
    assert drawn == pytest.approx(weights, abs=0.015) and drawn[3] == 0
    pooled = np.bincount([_draw_case(2, rng, weights) for _ in range(20000)], minlength=4) / 20000
    assert pooled == pytest.approx([2 / 3, 1 / 3, 0, 0], abs=0.015)      # the first 2 cases only, renormalised
    alike = np.bincount([_draw_case(4, rng, None) for _ in range(20000)], minlength=4) / 20000   # draw="case"
    assert alike == pytest.approx([0.25] * 4, abs=0.015)


def test_an_unknown_draw_is_refused_with_the_choices():
    with pytest.raises(InputError, match="Unknown draw 'cases'") as err:
        TrainConfig(draw="cases").validate()
    assert "--draw auto, case or paint" in err.value.todo


def test_auto_draws_by_paint_in_fewshot_mode_only():
    from ifssnet.train import draws_by_paint

    assert TrainConfig().draw == "auto"
    assert draws_by_paint(TrainConfig(mode="fewshot")) and not draws_by_paint(TrainConfig(mode="full"))
    assert not draws_by_paint(TrainConfig(mode="fewshot", draw="case")) and draws_by_paint(TrainConfig(draw="paint"))


def test_a_checkpoint_from_before_the_option_resumes_drawing_each_case_alike(tmp_path):
    """Its runs drew each case alike; ``auto`` would now draw by paint, and the resumed run would not be the run."""
    import torch

    cases = [_case("dense", range(0, 39)), _case("sparse", (20, 21, 22))]
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=2, run_length=8, checkpoint_every=1, draw="case")
    train(cases, tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    ckpt = torch.load(tmp_path / "f.ckpt.pt", weights_only=True)
    del ckpt["extra"]["training"]["config"]["draw"]         # as written before the option
    ckpt["extra"]["training"]["step"] = 1
    torch.save(ckpt, tmp_path / "old.ckpt.pt")
    train(cases, tmp_path / "g.pt", resume=tmp_path / "old.ckpt.pt")
    assert load_checkpoint(tmp_path / "g.pt")[2]["training"]["config"]["draw"] == "case"


def test_a_paint_run_draws_the_densely_painted_case_more_and_records_the_choice(tmp_path, monkeypatch):
    import ifssnet.train as T

    cases = [_case("dense", range(0, 39)), _case("sparse", (20, 21, 22))]   # both partly painted: kept as painted
    drawn, real = [], T.sample_run
    monkeypatch.setattr(T, "sample_run", lambda case, *a, **k: drawn.append(case.name) or real(case, *a, **k))
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=12, run_length=8, draw="paint", curriculum=False,
                      checkpoint_every=12)
    train(cases, tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    # painted slices on the muscle: 32 and 3, so about 9 of 10 runs from the dense case (uniform: 1 of 2)
    assert drawn.count("dense") >= 9 and len(drawn) == 12
    assert load_checkpoint(tmp_path / "f.ckpt.pt")[2]["training"]["config"]["draw"] == "paint"


def test_the_command_line_passes_draw_and_resume_refuses_another(tmp_path, capsys):
    from cli_output import error_line, run_cli
    from test_train_cli_errors import TINY as CLI_TINY, _case as cli_case

    case = cli_case(tmp_path / "c")
    start = ["train", case, "--mode", "fewshot", "--out", tmp_path / "m.pt", "--epochs", "1", "--steps", "2",
             "--checkpoint-every", "1", *CLI_TINY]
    assert run_cli(capsys, *start)[0] == 0
    assert load_checkpoint(tmp_path / "m.pt")[2]["training"]["config"]["draw"] == "auto"
    assert run_cli(capsys, *start, "--draw", "paint")[0] == 0
    assert load_checkpoint(tmp_path / "m.pt")[2]["training"]["config"]["draw"] == "paint"
    code, _, err = run_cli(capsys, *start, "--draw", "case", "--resume", tmp_path / "m.ckpt.pt")
    assert code == 2 and "--draw case (the run's: paint)" in error_line(err), error_line(err)
