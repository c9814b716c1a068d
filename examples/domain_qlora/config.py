"""``pipeline.yaml``: the example's single configuration, validated with pydantic.

Every section forbids unknown keys, and an error names the file and the dotted key
(``pipeline.yaml: model.sft.batch_size: Input should be greater than 0``), so a typo or a
bad value fails before any stage runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kitchen.config import load_yaml
from kitchen.errors import UsageError
from kitchen.io import read_text_bounded

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "pipeline.yaml"

PosInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GitSource(_Strict):
    """A directory committed into a local git repository (fixed dates: a pinned commit)."""

    name: str
    kind: Literal["git"]
    path: str
    include: list[str] = ["**/*"]


class ServedSource(_Strict):
    """A file of ``served_docs``, fetched over http from a local server during ``fetch``."""

    name: str
    kind: Literal["served"]
    file: str


class LocalSource(_Strict):
    """A local file or directory, fetched as a ``file://`` URL."""

    name: str
    kind: Literal["local"]
    path: str


class UrlSource(_Strict):
    name: str
    kind: Literal["url"]
    url: str


Source = Annotated[GitSource | ServedSource | LocalSource | UrlSource, Field(discriminator="kind")]


class FetchConfig(_Strict):
    attempts: PosInt = 3
    backoff: Annotated[float, Field(ge=0)] = 0.05
    rate_limit: Annotated[float, Field(gt=0)] = 50


class Filters(_Strict):
    shards: PosInt = 2
    dedup_threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.7
    min_chars: Annotated[int, Field(ge=0)] = 8
    max_chars: PosInt = 4000
    max_unprintable: Fraction = 0.05
    py_compile: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> Filters:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) > max_chars ({self.max_chars})")
        return self


class GenerateConfig(_Strict):
    teacher_max_items: Annotated[int, Field(ge=0)] = 8
    teacher_max_tokens: PosInt = 160


class DatasetConfig(_Strict):
    train: Fraction = 0.8
    valid: Fraction = 0.1
    test: Fraction = 0.1

    @model_validator(mode="after")
    def _sum(self) -> DatasetConfig:
        total = self.train + self.valid + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + valid + test must be 1.0, got {total:g}")
        if self.test == 0:
            raise ValueError("test must be > 0: the held-out split is the eval prompt suite")
        return self


class LoraConfig(_Strict):
    rank: PosInt = 16
    alpha: PosInt = 32
    target_modules: str | list[str] = "all-linear"


class SftConfig(_Strict):
    max_steps: PosInt = 40
    batch_size: PosInt = 8
    learning_rate: Annotated[float, Field(gt=0)] = 1e-2
    lr_schedule: Literal["constant", "linear", "cosine"] = "linear"
    warmup_steps: Annotated[int, Field(ge=0)] = 2
    max_length: PosInt = 192
    checkpoint_every: Annotated[int, Field(ge=0)] = 20


class ModelConfig(_Strict):
    path: str | None = None
    config: dict[str, Any] | None = None
    mode: Literal["qlora", "lora", "full"] = "qlora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    sft: SftConfig = Field(default_factory=SftConfig)

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if (self.path is None) == (self.config is None):
            raise ValueError("set exactly one of path (a pretrained model) or config")
        return self


class EvalConfig(_Strict):
    gen_tokens: PosInt = 40


class ExportConfig(_Strict):
    merged: bool = True
    gguf: list[Literal["f16", "q8_0"]] = []

    @model_validator(mode="after")
    def _gguf_needs_merged(self) -> ExportConfig:
        if self.gguf and not self.merged:
            raise ValueError("gguf needs merged: true (the adapter is merged into the base first)")
        return self


class PipelineConfig(_Strict):
    version: Literal[1] = 1
    seed: Annotated[int, Field(ge=0)] = 0
    work_dir: str = "runs/domain_qlora"
    sources: list[Source]
    served_docs: str = "corpus/docs/http"
    fetch: FetchConfig = Field(default_factory=FetchConfig)
    filters: Filters = Field(default_factory=Filters)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    #: The directory relative paths are resolved against (the config file's).
    base_dir: Path = Field(default=HERE, exclude=True)

    @model_validator(mode="after")
    def _unique_sources(self) -> PipelineConfig:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique, repeated: {dup}")
        return self

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def model_spec(self) -> dict[str, Any]:
        """The ``model`` block as kitchen's hf ``ModelSpec`` dict."""
        m = self.model
        spec: dict[str, Any] = {"mode": m.mode, "seed": self.seed}
        if m.path is not None:
            spec["path"] = str(self.resolve(m.path))
        else:
            spec["config"] = dict(m.config or {})
        if m.mode != "full":
            spec["lora"] = m.lora.model_dump()
        return spec


def _loc(loc: tuple[Any, ...]) -> str:
    # drop pydantic's discriminator tags (e.g. sources.0.git.path -> sources.0.path)
    parts = [str(p) for p in loc if p not in ("git", "served", "local", "url")]
    return ".".join(parts) or "(top level)"


def load_config(path: str | Path | None = None) -> PipelineConfig:
    """Read and validate ``path`` (default: the shipped ``pipeline.yaml``)."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    # kitchen's own bounded readers: a regular UTF-8 file of bounded size, YAML with
    # aliases, nesting and duplicate keys checked (the same rules as `kitchen run X.yaml`).
    try:
        text = read_text_bounded(file, what="file")
    except UsageError as exc:
        raise UsageError(f"cannot read the pipeline config: {exc}") from None
    data = load_yaml(text, f"pipeline config {file}")
    if not isinstance(data, dict):
        raise UsageError(f"{file}: the pipeline config must be a mapping of sections")
    try:
        return PipelineConfig.model_validate({**data, "base_dir": file.resolve().parent})
    except ValidationError as exc:
        errs = exc.errors()
        first = errs[0]
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise UsageError(f"{file.name}: {_loc(first['loc'])}: {first['msg']}{more}") from None
