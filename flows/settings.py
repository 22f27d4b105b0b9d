"""The typed schema of a workload's entry in params.yaml, checked before any stage runs.

A wrong type or value ('ten' epochs, a negative learning rate, a share above 1) is a one-line
error naming the key, the value and what is allowed, never a traceback three stages later.
Sections are closed (a misspelt key is an error) except ``model`` and ``source``, whose keys
depend on the model module or the generated source.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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


class Clean(Section):
    max_quarantined: Float = Share
    dedupe: bool = False


class Split(Section):
    seed: int
    val: Float = Field(ge=0.0, lt=1.0)
    test: Float = Field(ge=0.0, lt=1.0)
    test_partition: str | None = None


class Model(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    hidden: list[int] | None = None
    dropout: Float = Field(default=0.0, ge=0.0, lt=1.0)
    normalize: Literal["feature", "global", "none"] = "feature"


class Train(Section):
    seed: int
    device: Literal["auto", "cpu", "cuda"] = "auto"
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=0)
    optimizer: Literal["adam", "sgd", "rmsprop", "lbfgs", "none"]
    lr: Float = Field(ge=0.0)
    weight_decay: Float = Field(default=0.0, ge=0.0)
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


def problems(entry: dict[str, Any], where: str) -> list[str]:
    """One line per thing wrong in a workload's params entry (``where``: 'params.yaml:
    workloads.iris'), naming the key, the value and what is allowed; empty when it is fine."""
    try:
        Workload.model_validate(entry)
    except ValidationError as err:
        lines: dict[str, str] = {}
        for e in err.errors(include_url=False):
            # A union (list or mapping of ranges) reports each alternative: keep the first.
            path = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "list[", "dict[")))
            if path in lines:
                continue
            message = e["msg"].removeprefix("Value error, ")
            message = message[0].lower() + message[1:]
            if e["type"] == "extra_forbidden":
                section, _, key = path.rpartition(".")
                known = _section(section).model_fields if _section(section) else {}
                lines[path] = (f"{where}.{path} is not a setting cairn knows; {section or 'a workload'} has: "
                               f"{', '.join(f.alias or n for n, f in known.items())}")  # fmt: skip
            elif e["type"] == "missing":
                lines[path] = f"{where}.{path} is missing"
            elif e["type"] == "value_error":  # a rule across keys of a section
                lines[path] = f"{where}.{path}: {message}"
            else:
                lines[path] = f"{where}.{path} is {e['input']!r}; {message}"
        return list(lines.values())
    return []


def _section(dotted: str) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Workload
    for part in filter(None, dotted.split(".")):
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None) if model else None
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model
