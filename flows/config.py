"""params.yaml as one typed model: every section checked once, before any stage runs.

``load()`` parses and validates the whole file once per process (again only when the file
changes) and every reader of params.yaml goes through it: stage flows, the pipeline, plan,
deployments, workers. Defaults live here and nowhere else. A wrong type or value ('ten' epochs,
a negative learning rate, a share above 1, a misspelt key) is a one-line BadInput naming the key,
the value and what is allowed, never a traceback three stages later. Sections are closed except
``source`` (the generated source's own keys) and the ``model`` of a model module cairn does not
ship; each built-in model's section has its own keys and defaults.

A stage hands a step a workload's section with every default filled in (``Workload.settings``),
so no step keeps a default of its own. flows/config.py is a code dep of every stage, so changing
a default here reruns what it changes.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, model_validator

from steps.errors import BadInput

PARAMS_FILE = Path("params.yaml")

# Workload names reach file paths, DVC stage names and Prefect artifact keys: letters, digits,
# '-' and '_' only, so none of them can carry shell syntax or climb out of data/.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: object, what: str) -> str:
    """``name`` if it is a safe workload name, else BadInput saying what is wrong."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadInput(
            f"{what} {name!r} is not a valid name; use letters, digits, '-' and '_' (at most 64, "
            "starting with a letter or digit)"
        )
    return name


def check_inside(path: object, what: str, root: Path | None = None) -> Path:
    """``path`` as a relative Path inside ``root`` (default: the working directory, the
    repository root), else BadInput. Refuses absolute paths, '..' and shell syntax."""
    root = (root or Path.cwd()).resolve()
    if not isinstance(path, str) or not re.fullmatch(r"[A-Za-z0-9_./-]+", path):
        raise BadInput(f"{what} {path!r} is not a plain relative path (letters, digits, '_', '-', '.', '/')")
    resolved = (root / path).resolve()
    if Path(path).is_absolute() or ".." in Path(path).parts or not resolved.is_relative_to(root):
        raise BadInput(f"{what} {path!r} is outside the repository {root}")
    return Path(path)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Share = Field(ge=0.0, le=1.0)
Float = float  # strict floats take ints too: YAML writes 1.0 as 1


class Image(Section):
    column: str
    shape: list[int] = Field(min_length=1)


class Schema(Section):
    key: str | None = None
    label: str
    features: list[str] | None = None  # null: every column but the key and the label
    image: Image | None = None
    range: list[Float] | dict[str, list[Float]] | None = None
    parse: dict[str, Literal["number", "percent", "money", "range_mid", "category"]] | None = None
    categorical: list[str] | None = None
    # The decimal mark of numbers ('.' with ',' for thousands, or ','), for every column or by
    # column; null: what the cells show (steps/schema.py), and a cell such as '1.000' that nothing
    # decides is quarantined as ambiguous.
    decimal: Literal[".", ","] | dict[str, Literal[".", ","]] | None = None
    # The labels a model may learn; a row with another label is quarantined ('unknown class').
    # null: any label, but a text label seen in fewer than clean.min_class_rows rows is quarantined.
    classes: list[str | int] | None = None


class Clean(Section):
    max_quarantined: Float = Share
    dedupe: bool = False
    # A text label in fewer rows than this (over all partitions) is quarantined as a 'rare class'
    # (a half-written file's 'vers'), unless schema.classes lists the classes; 0: never.
    min_class_rows: int = Field(default=2, ge=0)


class Split(Section):
    seed: int
    val: Float = Field(ge=0.0, lt=1.0)
    test: Float = Field(ge=0.0, lt=1.0)
    test_partition: str | None = None


Normalize = Literal["feature", "global", "none"]
Width = Annotated[int, Field(ge=1)]


class Mlp(Section):
    name: Literal["mlp"]
    hidden: list[Width] = []  # no hidden layer: multinomial logistic regression
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0)
    normalize: Normalize = "feature"


class Autoencoder(Section):
    name: Literal["autoencoder"]
    hidden: list[Width] = Field(min_length=1)  # the encoder's widths; the decoder mirrors them
    normalize: Normalize = "feature"


class Logistic(Section):
    name: Literal["logistic"]
    normalize: Normalize = "feature"


class Linear(Section):
    name: Literal["linear"]
    solver: Literal["closed", "sgd"] = "closed"  # the one published; both are trained and reported
    normalize: Normalize = "feature"


class Forest(Section):
    name: Literal["forest"]
    trees: int = Field(default=100, ge=1)
    max_depth: int | None = Field(default=None, ge=1)  # None: grown until leaves are pure
    min_samples_leaf: int = Field(default=1, ge=1)
    normalize: Normalize = "feature"


class OwnModel(BaseModel):
    """The ``model`` of a model module cairn does not ship: its other keys are the module's own."""

    model_config = ConfigDict(extra="allow", strict=True)
    name: str
    normalize: Normalize = "feature"


BUILT_IN_MODELS: dict[str, type[BaseModel]] = {
    "mlp": Mlp, "autoencoder": Autoencoder, "logistic": Logistic, "linear": Linear, "forest": Forest
}  # fmt: skip


def _model_kind(value: Any) -> str:
    name = value.get("name") if isinstance(value, dict) else getattr(value, "name", None)
    return name if name in BUILT_IN_MODELS else "own"


# A model section is checked against its own model's keys: the built-in models' keys are closed
# and carry their defaults; a user's own module's keys are open.
Model = Annotated[
    Annotated[Mlp, Tag("mlp")]
    | Annotated[Autoencoder, Tag("autoencoder")]
    | Annotated[Logistic, Tag("logistic")]
    | Annotated[Linear, Tag("linear")]
    | Annotated[Forest, Tag("forest")]
    | Annotated[OwnModel, Tag("own")],
    Discriminator(_model_kind),
]


_MODEL_TAGS = {*BUILT_IN_MODELS, "own"}


def model_settings(**keys: Any) -> dict[str, Any]:
    """A ``model`` section as a stage hands it to a step: ``keys`` checked, defaults filled in."""
    return TypeAdapter(Model).validate_python(keys).model_dump()


class Train(Section):
    seed: int
    device: Literal["auto", "cpu", "cuda"] = "auto"
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=0)
    optimizer: Literal["adam", "sgd", "rmsprop", "lbfgs", "none"]
    lr: Float = Field(ge=0.0)
    # None: the model's own default (0 for networks; scikit-learn's C=1 for logistic regression).
    weight_decay: Float | None = Field(default=None, ge=0.0)
    schedule: Literal["cosine", "constant"] = "constant"
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(default=0, ge=0)
    warm_start: bool = False
    threads: int = Field(default=2, ge=1)  # CPU threads: part of what fixes the model's bytes
    # A binary classifier predicts class 1 from this probability: a value, or tuned on validation.
    threshold: Literal["f1", "youden"] | Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5

    @model_validator(mode="after")
    def _gradient_settings(self) -> Train:
        # 'none' (a closed-form or tree model) ignores batch size and learning rate; 'lbfgs' is
        # full-batch with a line search.
        if self.optimizer not in ("none", "lbfgs") and self.batch_size < 1:
            raise ValueError(f"batch_size is {self.batch_size}; with optimizer {self.optimizer!r} it must be ≥ 1")
        if self.optimizer not in ("none", "lbfgs") and self.lr <= 0:
            raise ValueError(f"lr is {self.lr}; with optimizer {self.optimizer!r} it must be > 0")
        return self


class Evaluate(Section):
    plot: Literal["confusion", "scatter"] = "confusion"
    slice: str | None = None


class Publish(Section):
    min_label_agreement: Float = Share
    max_diff: Float = Field(ge=0.0)


class Promote(Section):
    metric: str
    margin: Float = 0.0  # below 0: a challenger slightly worse than the champion is promoted too


class Workload(Section):
    raw: str
    source: dict[str, Any] | None = None
    schema_: Schema = Field(alias="schema")
    clean: Clean
    split: Split
    model: Model
    train: Train
    evaluate: Evaluate
    publish: Publish
    promote: Promote

    @model_validator(mode="after")
    def _columns_kept(self) -> Workload:
        # Columns that params name besides the label and features must be among them: ingest keeps
        # no other column, so a later stage would not find it. With features null, ingest checks
        # them against the file's header instead.
        schema = self.schema_
        if schema.features is None or schema.image is not None:
            return self
        kept = [schema.label, *schema.features]
        ranges = schema.range if isinstance(schema.range, dict) else {}
        named = [("schema.parse", c) for c in schema.parse or {}] + [
            ("schema.categorical", c) for c in schema.categorical or []
        ] + [("schema.range", c) for c in ranges] + [
            ("schema.decimal", c) for c in (schema.decimal if isinstance(schema.decimal, dict) else {})
        ]  # fmt: skip
        if self.evaluate.slice is not None:
            named.append(("evaluate.slice", self.evaluate.slice))
        for key, col in named:
            if col not in kept and not (key == "evaluate.slice" and col == "partition"):
                raise ValueError(
                    f"{key} names column {col!r}, which is neither the label nor in schema.features, so no "
                    f"stage keeps it; the label and features are: {', '.join(kept)}"
                )
        return self

    def settings(self, section: str) -> Any:
        """Section ``section`` ('schema', 'model', 'train', ...) with every default filled in, as a
        fresh mapping: what a stage hands to a step, hashes into a datum key and records in a model
        card, so every step reads every key without a default of its own."""
        value = getattr(self, "schema_" if section == "schema" else section)
        return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else copy.deepcopy(value)


class ScoreEntry(Section):
    inbox: str


class Execution(Section):
    """``execution``: how stages run. No stage lists these keys as DVC params, so changing them
    never reruns a stage: they change the speed, not the bytes."""

    jobs: int = Field(default=1, ge=1)  # local stages at once in the pipeline flow
    runner: Literal["serial", "threads", "processes", "dask"] = "processes"
    workers: int = Field(default=2, ge=1)
    dask_address: str | None = None  # tcp://scheduler:8786; null: a LocalCluster of `workers`
    max_tasks: int = Field(default=64, ge=1)
    batch_mb: float = Field(default=64.0, gt=0)
    # An untracked pipeline trains a torch fit of at least this many optimizer steps (epochs ×
    # batches) in a process of its own (flows/runtime/pipeline.py: own_process); 0: every torch
    # fit; null: none.
    fit_process: int | None = Field(default=3000, ge=0)


class Deploy(Section):
    """``deploy``: how cairn is operated from Prefect (prefect.yaml, workers)."""

    work_pool: str = "cairn"
    retrain_cron: str = "0 3 * * *"
    timezone: str = "UTC"
    watch_seconds: int = Field(default=300, ge=1)
    remote_stages: dict[str, str] = Field(default_factory=dict)  # {stage address: work pool}
    worker_timeout_seconds: float = Field(default=6 * 3600, gt=0)  # queueing plus a long training run
    worker_repos: list[str] = Field(default_factory=list)
    # A file in a raw folder has arrived once its size and mtime stayed the same this long and no
    # process holds it open for writing (flows/service/deployments.py: Arrivals).
    arrival_quiet_seconds: float = Field(default=3.0, gt=0)
    # Origins (scheme://host[:port]) the UI may be opened from besides http://localhost:PORT and
    # http://127.0.0.1:PORT: an SSH tunnel on another port, a proxy. Their hosts pass the
    # server's Host check too.
    allowed_origins: list[str] = Field(default_factory=list)
    log_max_mb: float = Field(default=10.0, gt=0)  # `make serve`'s logs roll over at this size
    stop_seconds: float = Field(default=10.0, gt=0)  # Ctrl-C / `make stop`: all stopped within this


class Params(Section):
    """The whole of params.yaml."""

    workloads: dict[str, Workload]
    score: dict[str, ScoreEntry] = Field(default_factory=dict)
    execution: Execution = Field(default_factory=Execution)
    deploy: Deploy = Field(default_factory=Deploy)

    def workload(self, name: str, path: Path = PARAMS_FILE) -> Workload:
        """The typed entry of workload ``name``; BadInput naming the workloads there are."""
        if name not in self.workloads:
            raise BadInput(f"{path} has no workload '{name}'; it has: {', '.join(self.workloads) or 'none'}")
        return self.workloads[name]

    def inbox(self, name: str, path: Path = PARAMS_FILE) -> Path:
        """``score.<name>.inbox``: where new data to score with ``name``'s champion lands."""
        if name not in self.score:
            raise BadInput(f"{path}: score has no entry for '{name}'; it has: {', '.join(self.score) or 'none'}")
        return Path(self.score[name].inbox)


_CACHE: dict[tuple, Params] = {}


def load(path: Path = PARAMS_FILE) -> Params:
    """params.yaml, parsed and checked whole; once per process while the file is unchanged.
    ``CAIRN_RUNNER`` and ``CAIRN_WORKERS`` override ``execution.runner`` and ``.workers`` for
    one command. BadInput lists everything wrong, one line each."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInput(f"{path} not found in {Path.cwd()}; run cairn from the repository root") from None
    env = (os.environ.get("CAIRN_RUNNER"), os.environ.get("CAIRN_WORKERS"))
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, env)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = parse(_read_yaml(path), path, env)
    return _CACHE[key]


def _read_yaml(path: Path) -> Any:
    """``path`` parsed, as yaml.safe_load reads it, by libyaml's parser where PyYAML has it (3 ms
    for params.yaml, not 27); BadInput saying where, for text that is not YAML."""
    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        what = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BadInput(f"{path} is not valid YAML: {what} ({where})") from None


def parse(raw: Any, path: Path = PARAMS_FILE, env: tuple[str | None, str | None] = (None, None)) -> Params:
    """``raw`` (parsed YAML) as Params; BadInput naming every problem (``path`` says where)."""
    if not isinstance(raw, dict):
        raise BadInput(f"{path} is not a mapping of sections")
    workloads = raw.get("workloads")
    if not isinstance(workloads, dict) or not workloads:
        raise BadInput(f"{path} has no 'workloads' section")
    wrong: list[str] = []
    for name, entry in workloads.items():
        check_name(name, f"{path}: workload")
        if not isinstance(entry, dict):
            raise BadInput(f"{path}: workload {name!r} is {entry!r}; expected a mapping of settings")
        check_inside(entry.get("raw"), f"{path}: workloads.{name}.raw")
        wrong += problems(entry, f"{path}: workloads.{name}")
    for name, entry in (raw.get("score") or {}).items():
        if name not in workloads:
            raise BadInput(f"{path}: score names '{name}', which is not a workload; workloads: {', '.join(workloads)}")
        check_inside((entry or {}).get("inbox"), f"{path}: score.{name}.inbox")
    execution = dict(raw.get("execution") or {})
    runner, workers = env
    if runner:
        execution["runner"] = runner
    if workers:
        execution["workers"] = int(workers) if workers.isdigit() else workers
    for section, model in (("execution", Execution), ("deploy", Deploy)):
        wrong += problems(execution if section == "execution" else raw.get(section) or {}, f"{path}: {section}", model)
    if wrong:
        raise BadInput("; ".join(wrong))
    params = Params.model_validate({k: v for k, v in raw.items() if v is not None} | {"execution": execution})
    return params


def workload(name: str, path: Path = PARAMS_FILE) -> Workload:
    """The typed params of workload ``name`` (see ``load``)."""
    return load(path).workload(name, path)


def problems(entry: dict[str, Any], where: str, model: type[BaseModel] | None = None) -> list[str]:
    """One line per thing wrong in a workload's params entry (``where``: 'params.yaml:
    workloads.iris'), naming the key, the value and what is allowed; empty when it is fine."""
    model = model or Workload
    try:
        model.model_validate(entry)
    except ValidationError as err:
        lines: dict[str, str] = {}
        for e in err.errors(include_url=False):
            # A union (list or mapping of ranges) reports each alternative: keep the first.
            # A model section's tag (its model's name) is in the location, not in params.yaml.
            loc = [str(p) for p in e["loc"] if not str(p).startswith(("function-", "list[", "dict["))]
            path = ".".join(p for i, p in enumerate(loc) if not (i and loc[i - 1] == "model" and p in _MODEL_TAGS))
            if path in lines:
                continue
            message = e["msg"].removeprefix("Value error, ")
            message = message[0].lower() + message[1:]
            if e["type"] == "extra_forbidden":
                section, _, key = path.rpartition(".")
                known = _section(section, model, entry).model_fields if _section(section, model, entry) else {}
                owner = section or where.rpartition(" ")[2]
                lines[path] = (f"{where}.{path} is not a setting cairn knows; {owner} has: "
                               f"{', '.join(f.alias or n for n, f in known.items())}")  # fmt: skip
            elif e["type"] == "missing":
                lines[path] = f"{where}.{path} is missing"
            elif e["type"] == "value_error":  # a rule across keys of a section
                lines[path] = f"{where}.{path}: {message}" if path else f"{where}.{message}"
            else:
                lines[path] = f"{where}.{path} is {e['input']!r}; {message}"
        return list(lines.values())
    return []


def _section(dotted: str, root: type[BaseModel], entry: dict[str, Any]) -> type[BaseModel] | None:
    """The model class of section ``dotted`` of ``entry`` (validated by ``root``)."""
    model: type[BaseModel] | None = root
    for part in filter(None, dotted.split(".")):
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None) if model else None
        if part == "model" and model is Workload:
            model = BUILT_IN_MODELS.get(_model_kind(entry.get("model") or {}), OwnModel)
            continue
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model
