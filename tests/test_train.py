import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml
from conftest import BLOBS_SCHEMA, ROOT, TINY_MODEL, TINY_TRAIN, blobs_sets, needs_avx2

from flows import config
from steps import BadInput, models, split, train
from steps.models import mlp

MODEL, PARAMS = TINY_MODEL, TINY_TRAIN


@pytest.fixture(scope="module")
def sets():
    return blobs_sets(300)


def fit(sets, model=None, **over):
    return train.train(sets["train"], sets["val"], BLOBS_SCHEMA, model or MODEL, PARAMS | over)


def accuracy(fitted, table):
    x = models.features(table, BLOBS_SCHEMA, fitted.spec["encoding"])
    y = models.labels(table, "kind", fitted.spec["classes"])
    return (models.module(fitted.spec["model"]["name"]).predict(fitted, x).argmax(1) == y).mean()


def test_learns_separable_classes(sets):
    assert accuracy(fit(sets), sets["test"]) > 0.95


def test_same_seed_gives_the_same_bytes_and_leaves_the_global_rng_alone(sets):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = models.to_bytes(fit(sets))
    assert torch.rand(1) == before  # training drew from its own generator, not the global one
    assert a == models.to_bytes(fit(sets))
    assert a != models.to_bytes(fit(sets, seed=2))


def test_normalisation_is_fitted_on_train_rows_only(sets):
    fitted = fit(sets, epochs=1)
    train_mean = models.features(sets["train"], BLOBS_SCHEMA).mean(axis=0)
    np.testing.assert_allclose(fitted.arrays["mean"], train_mean, rtol=1e-5)
    all_mean = np.concatenate([models.features(sets[s], BLOBS_SCHEMA) for s in split.SETS]).mean(axis=0)
    assert not np.allclose(fitted.arrays["mean"], all_mean, rtol=1e-6)


def test_early_stopping_keeps_the_best_validation_epoch(sets):
    # Separable data: validation accuracy reaches its top early and cannot improve after it.
    fitted = fit(sets, epochs=200, patience=3, lr=0.05, schedule="constant", monitor="val_accuracy")
    top = max(e.val_accuracy for e in fitted.history)
    first_top = next(e.epoch for e in fitted.history if e.val_accuracy == top)
    assert fitted.best_epoch == first_top
    assert len(fitted.history) == fitted.best_epoch + 3 < 200


def test_history_csv_has_no_timings(sets):
    text = train.history_csv(fit(sets, epochs=2).history)
    assert text.splitlines()[0] == "epoch,train_loss,val_loss,val_accuracy,lr"
    assert len(text.splitlines()) == 3


def test_weights_round_trip_through_safetensors(sets):
    fitted = fit(sets, epochs=2)
    again = models.from_bytes(fitted.spec, models.to_bytes(fitted))
    x = models.features(sets["test"], BLOBS_SCHEMA)
    assert np.array_equal(mlp.predict(again, x), mlp.predict(fitted, x))


def test_a_binary_classifier_threshold_is_fixed_or_tuned_on_validation_as_params_say():
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.35, 0.3, 0.8, 0.9])
    assert train.choose_threshold("f1", y, p1) == 0.3  # catches every positive at one false positive
    assert train.choose_threshold("youden", y, p1) == 0.8  # TPR 2/3 at FPR 0: J = 0.67 beats 1 - 1/2
    assert train.choose_threshold(0.5, y, p1) == 0.5
    assert train.choose_threshold(0.7, y, p1) == 0.7


def test_unknown_label_and_bad_params_are_clear_errors(sets):
    with pytest.raises(BadInput, match="label 'z' in column 'kind' is not a class seen in train"):
        models.labels(pa.table({"kind": ["a", "z"]}), "kind", ["a", "b"])
    with pytest.raises(BadInput, match="optimizer is 'adagrad'"):
        fit(sets, optimizer="adagrad")
    with pytest.raises(BadInput, match="no module steps/models/nope.py"):
        fit(sets, model=MODEL | {"name": "nope"})


def test_warm_start_begins_at_the_champions_weights(sets):
    champion = fit(sets, epochs=3)
    # With a learning rate of 0 nothing moves: the result is the champion's weights, exactly.
    frozen = train.train(sets["train"], sets["val"], BLOBS_SCHEMA, MODEL, PARAMS | {"lr": 0.0, "epochs": 1},
                         start=champion)  # fmt: skip
    assert frozen.spec["warm_start"] == {"used": True, "reason": "same architecture"}
    for name, array in champion.arrays.items():
        np.testing.assert_array_equal(frozen.arrays[name], array, err_msg=name)
    cold = fit(sets, lr=0.0, epochs=1)
    assert not np.array_equal(cold.arrays["net.0.weight"], champion.arrays["net.0.weight"])
    # Fine-tuning goes on from where the champion was: its first epoch starts near the champion's loss.
    tuned = train.train(sets["train"], sets["val"], BLOBS_SCHEMA, MODEL, PARAMS | {"epochs": 1}, start=champion)
    assert tuned.history[0].train_loss < cold.history[0].train_loss


def test_warm_start_is_refused_and_said_when_the_architecture_differs(sets):
    champion = fit(sets, epochs=1)
    wider = train.train(sets["train"], sets["val"], BLOBS_SCHEMA, MODEL | {"hidden": [12]}, PARAMS | {"epochs": 1},
                        start=champion)  # fmt: skip
    assert wider.spec["warm_start"] == {"used": False, "reason": "different model from the champion's"}
    forest = config.model_settings(name="forest", trees=3, max_depth=4, normalize="none")
    trees = train.train(sets["train"], sets["val"], BLOBS_SCHEMA, forest, PARAMS, start=champion)
    assert trees.spec["warm_start"] == {"used": False, "reason": "model 'forest' cannot start from given weights"}


@pytest.mark.parametrize("dropout", [0.3, 0.0])
def test_an_interrupted_run_resumes_to_the_same_bytes(sets, dropout):
    """With dropout the fit's global generator state comes back too; without, the fit never
    touches that generator after building its net, so a resume leaves it to other fits."""
    from steps.models import torchnet

    over = {"epochs": 9}
    model = MODEL | {"dropout": dropout}
    whole = fit(sets, model=model, **over)
    saved = {}

    def crash_after_four(epoch, fitted):
        saved["state"] = torchnet.state_to_bytes(fitted.state)  # what the flow writes each epoch
        if epoch.epoch == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train(sets["train"], sets["val"], BLOBS_SCHEMA, model, PARAMS | over, crash_after_four)
    trained = []
    before = torch.get_rng_state()
    resumed = train.train(sets["train"], sets["val"], BLOBS_SCHEMA, model, PARAMS | over,
                          lambda epoch, _: trained.append(epoch.epoch),
                          resume=torchnet.state_from_bytes(saved["state"]))  # fmt: skip
    assert torch.equal(torch.get_rng_state(), before)  # the global generator as it was, either way
    assert trained == [5, 6, 7, 8, 9]  # epochs 1-4 were not trained again
    assert [e.epoch for e in resumed.history] == list(range(1, 10))
    assert train.history_csv(resumed.history) == train.history_csv(whole.history)
    assert models.to_bytes(resumed) == models.to_bytes(whole)  # dropout, shuffling, Adam, schedule: all as before


@needs_avx2
def test_every_cairn_process_trains_with_the_avx2_kernels():
    import subprocess
    import sys

    probe = "import flows, torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "AVX2"  # on any x86-64 CPU with AVX2, AVX-512 or not


def test_fits_in_threads_at_once_train_the_bytes_each_trains_alone(sets):
    """The pipeline trains torch models side by side in threads of one process. Each seeds torch's
    global generator to build its net in turn; a net with dropout draws from it while it trains,
    so such a fit holds it to the end (steps/models/torchnet.py: _SEEDING): two dropout fits and
    one without, started together, train what each trains alone."""
    import threading

    runs = {
        "dropout, seed 1": (MODEL | {"dropout": 0.3}, {"seed": 1}),
        "dropout, seed 2": (MODEL | {"dropout": 0.3}, {"seed": 2}),
        "no dropout": (MODEL, {"seed": 3}),
    }
    alone = {name: models.to_bytes(fit(sets, model, **over)) for name, (model, over) in runs.items()}
    start, together = threading.Barrier(len(runs)), {}

    def run(name: str) -> None:
        model, over = runs[name]
        start.wait()
        together[name] = models.to_bytes(fit(sets, model, **over))

    threads = [threading.Thread(target=run, args=(name,)) for name in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone
    assert mlp.exclusive(MODEL | {"dropout": 0.3}) and not mlp.exclusive(MODEL | {"dropout": 0.0})


def test_a_workload_that_leaves_out_optional_settings_trains_with_params_defaults(sets, tmp_path):
    """The train stage hands its step the sections with config's defaults filled in: no KeyError for
    a workload without patience or weight_decay, and the normalisation params' model documents."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    iris = params["workloads"]["iris"]
    for key in ("patience", "weight_decay", "schedule", "monitor", "threshold"):
        iris["train"].pop(key)
    iris["model"].pop("normalize")
    params["workloads"], params["score"] = {"iris": iris}, {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    workload = config.workload("iris", tmp_path / "params.yaml")
    model, settings = workload.settings("model") | {"hidden": [8]}, workload.settings("train") | {"epochs": 3}
    fitted = train.train(sets["train"], sets["val"], BLOBS_SCHEMA, model, settings)
    assert fitted.spec["model"]["normalize"] == "feature"
    x = models.features(sets["train"], BLOBS_SCHEMA, fitted.spec["encoding"])
    assert np.allclose(fitted.arrays["mean"], x.mean(0), rtol=1e-4)  # fitted per feature, as 'feature' says


# A tiny train step as the train stage runs it (flows/train.py), in a process of its own: the
# kernels are chosen when torch loads, so each emulated CPU needs a fresh process.
PROBE = """
import hashlib, json, sys
import flows  # noqa: F401 - pins the CPU kernels before torch loads, as in every cairn process
import pyarrow.parquet as pq
import torch
from steps import models, train
folder, model, settings, schema, threads = sys.argv[1], *map(json.loads, sys.argv[2:])
torch.use_deterministic_algorithms(True)
sets = {name: pq.read_table(f"{folder}/{name}.parquet") for name in ("train", "val")}
for count in threads:  # one line per thread count: the kernels, the weights' md5
    torch.set_num_threads(count)
    fitted = train.train(sets["train"], sets["val"], schema, model, settings | {"threads": count})
    print(torch.backends.cpu.get_cpu_capability(), hashlib.md5(models.to_bytes(fitted)).hexdigest())
"""


@needs_avx2
def test_under_the_pins_the_kernels_other_cpus_would_pick_train_the_same_bytes(sets, tmp_path):
    """#29, emulated on one machine: the instruction sets MKL would pick on other x86-64 CPUs
    (its instruction caps) and one thread instead of two train the same bytes under cairn's pins
    (flows/__init__.py); ATen's unvectorised kernels, what a CPU without AVX2 runs, give other
    bytes, so the pin is what makes them equal. (MKL's own choice on an Intel Xeon with AMX is
    beyond emulation here: docs/machines.md.)"""
    import json
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    for name in ("train", "val"):
        pq.write_table(sets[name], tmp_path / f"{name}.parquet")
    (tmp_path / "probe.py").write_text(PROBE)
    pins = ("MKL_", "ATEN_CPU_CAPABILITY", "DNNL_", "ONEDNN_", "CAIRN_CPU_ISA")
    base = {k: v for k, v in os.environ.items() if not k.startswith(pins)}

    def trained(*threads: int, **setting: str) -> list[str]:
        args = [json.dumps(x) for x in (MODEL, PARAMS, BLOBS_SCHEMA, list(threads or [2]))]
        return subprocess.run([sys.executable, str(tmp_path / "probe.py"), str(tmp_path), *args], env=base | setting,
                              capture_output=True, text=True, check=True).stdout.split("\n")[:-1]  # fmt: skip

    pinned, one_thread = trained(2, 1)
    assert pinned.startswith("AVX2 ")
    emulated = {
        "one thread": one_thread,
        "MKL_ENABLE_INSTRUCTIONS=AVX2": trained(MKL_ENABLE_INSTRUCTIONS="AVX2")[0],
        "MKL_ENABLE_INSTRUCTIONS=AVX512": trained(MKL_ENABLE_INSTRUCTIONS="AVX512")[0],
    }
    assert emulated == dict.fromkeys(emulated, pinned)
    (unvectorised,) = trained(CAIRN_CPU_ISA="default")
    assert unvectorised.startswith("DEFAULT ") and unvectorised.split()[1] != pinned.split()[1]


# The linear model's closed-form fit and an SGD gradient (steps/models/linear.py) in a process of
# its own: numpy's OpenBLAS picks its kernels when numpy loads.
OPENBLAS_PROBE = """
import hashlib
import flows  # noqa: F401 - pins OpenBLAS's kernels before numpy loads, as in every cairn process
import numpy as np
import threadpoolctl
from steps.models import linear
rng = np.random.default_rng(7)
z, t = rng.normal(size=(5000, 6)), rng.normal(size=5000)
w, b = linear._closed(z, t)
gradient = z.T @ (z @ w + b - t)
cores = {i["architecture"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"}
print(",".join(sorted(cores)), hashlib.md5(w.tobytes() + gradient.tobytes()).hexdigest())
"""


@needs_avx2
def test_numpy_runs_the_avx2_openblas_kernels_in_every_cairn_process_and_other_kernels_fit_other_bytes(tmp_path):
    """numpy's and scipy's OpenBLAS pick kernels by CPU model (AVX-512 ones on the AVX-512 EPYC,
    Haswell on an AVX2-only one: train@sales differed between them, docs/machines.md). Under
    cairn's pin every OpenBLAS runs the Haswell (AVX2) kernels, whatever the thread count; the
    kernels of an older CPU fit the linear model to other bytes, so the pin is what makes them
    equal."""
    import os
    import subprocess
    import sys

    (tmp_path / "probe.py").write_text(OPENBLAS_PROBE)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "CAIRN_CPU_ISA"))}

    def fitted(**setting: str) -> list[str]:
        return subprocess.run([sys.executable, str(tmp_path / "probe.py")], env=base | setting, capture_output=True,
                              text=True, check=True).stdout.split()  # fmt: skip

    pinned = fitted()
    assert pinned[0] == "Haswell"  # numpy's and scipy's both
    assert fitted(OPENBLAS_NUM_THREADS="1") == fitted(OPENBLAS_NUM_THREADS="4") == pinned
    older = fitted(OPENBLAS_CORETYPE="Sandybridge")
    assert older[0] == "Sandybridge" and older[1] != pinned[1]
