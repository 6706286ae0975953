from unlearnkit.config import build_config
from unlearnkit.experiment import run_experiment


def test_class_forget_reference_is_sound():
    cfg = build_config(
        forget="class:3",
        methods=["finetune"],
        train={"epochs": 8, "lr": 0.05},
        pretrain_config={"epochs": 5, "lr": 0.05},
        method_params={"finetune": {"epochs": 1}},
    )
    results = run_experiment(cfg)
    assert {"dataset", "model", "forget", "seeds", "runs", "summary"} <= set(results)
    rows = {r["method"]: r for r in results["runs"]}
    assert set(rows) == {"original", "retrain", "finetune"}
    assert rows["retrain"]["acc"]["forget"] == 0.0
    assert rows["original"]["acc"]["forget"] > 80
    assert rows["retrain"]["tow"] == 1.0
    for row in rows.values():
        assert set(row) >= {
            "acc",
            "mia_efficacy",
            "tow",
            "tow_mia",
            "relearn_epochs",
            "time_s",
            "peak_mem_mb",
            "params_touched",
        }
    assert rows["finetune"]["params_touched"] > 0
    assert results["trainable_params"] == 970
