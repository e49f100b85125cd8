"Run folders written before methods were plug-ins (format 1: flat config.json, member{k}.pt) still load and measure; resuming them is refused."
import json
import torch
from sharpbalance import models as sbmodels
from sharpbalance.core import set_seed
from sharpbalance.learner import load_ensemble
from helpers import TRAIN, MEASURE, run, clean_error

V1 = dict(data="digits", model="cnn", width=None, seed=[1, 2], method="sharpbalance", rho=0.1, adaptive=False, flat_ratio=0.5,
          initial_epochs=1, epochs=2, lr=0.05, lrsche="multistep", momentum=0.9, weight_decay=0.0005, batch_size=128, tail="low",
          boost=False, selection="sharpbalance", score_kind="fisher", init_from=None, init_epoch=None, data_path=None,
          n_classes=10, input_shape=[1, 16, 16])

def write_v1(folder):
    "A format-1 run folder as the previous trainer wrote it: flat config.json, member{k}.pt and member{k}_epoch{T}.pt."
    folder.mkdir(parents=True)
    (folder/"config.json").write_text(json.dumps(V1, indent=1))
    models = []
    for k, s in enumerate(V1["seed"]):
        set_seed(s); m = sbmodels.create("cnn", 10, (1, 16, 16)); models.append(m)
        sd = dict(k=k, seed=s, epoch=2, model=m.state_dict(), log=[])
        torch.save(sd, folder/f"member{k}.pt"); torch.save({**sd, "epoch": 1}, folder/f"member{k}_epoch1.pt")
    (folder/"summary.json").write_text(json.dumps(dict(config={k: V1[k] for k in V1 if k not in ("n_classes", "input_shape")})))
    return models

def test_v1_loads_with_migrated_settings(tmp_path):
    models = write_v1(tmp_path/"old")
    cfg, members = load_ensemble(tmp_path/"old")
    assert cfg.method == "sharpbalance" and cfg.initial_epochs == 0  # format 1 counted T_d + 1 SAM epochs
    assert cfg.boost is False and len(members) == 2
    for a, b in zip(members, models):
        for p, q in zip(a.state_dict().values(), b.state_dict().values()): assert torch.equal(p, q)
    assert len(load_ensemble(tmp_path/"old", epoch=1)[1]) == 2

def test_v1_measures_and_refuses_resume(tmp_path):
    write_v1(tmp_path/"old")
    r = run(MEASURE, "--resume", str(tmp_path/"old"), "--mode", "disagreement", "--save", str(tmp_path/"m"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path/"m"/"disagreement.json").read_text())["method"] == "sharpbalance"
    before = sorted(p.name for p in (tmp_path/"old").iterdir())
    r = run(TRAIN, "--seed", "1 2", "--sam", "True", "--rho", "0.1", "--flat_ratio", "0.5", "--initial_epochs", "0", "--epochs", "2",
            "--batch_size", "128", "--lr", "0.05", "--quiet", "--save_path", str(tmp_path/"old"))
    clean_error(r, "earlier sharpbalance")
    assert sorted(p.name for p in (tmp_path/"old").iterdir()) == before
