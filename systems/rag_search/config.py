"""rag's settings (MLSD_RAG_*), the artifact names its steps pass along, and one config per step (its CLI flags).

Kept light to import (pydantic only): `mlsd` reads SETTINGS to check the environment, the locustfile reads it too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.bench.flags import BenchFlags
from infra.steps import ConfigError, ServeFlags, StepConfig, flag


class RagSettings(BaseSettings):
    """Every MLSD_RAG_* variable the system reads (the server, `mlsd rag ask`, the bench's locustfile)."""

    model_config = SettingsConfigDict(env_prefix="MLSD_RAG_", extra="ignore")

    threads: int = Field(
        1, ge=1, description="threads of the server's MiniLM encoder (PyTorch or ONNX Runtime)"
    )
    encoder: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx",
        description="how `mlsd rag index` runs MiniLM: torch, onnx (ONNX Runtime fp32) or onnx-int8 (dynamic "
        "int8); the index records it and queries are embedded by the same one",
    )
    smollm: bool = Field(
        False, description="the server also loads the SmolLM2-135M generator (/ask generator=smollm)"
    )
    openai_url: str | None = Field(
        None,
        description="an OpenAI-compatible endpoint (vLLM, TGI) the server loads as /ask generator=openai; "
        "also the default of `mlsd rag ask --openai-url`",
    )
    openai_model: str = Field("default", description="the model name sent to MLSD_RAG_OPENAI_URL")
    openai_deadline_s: float = Field(
        15.0,
        gt=0,
        description="the server waits this long for MLSD_RAG_OPENAI_URL, then answers extractively",
    )
    debug_raw: bool = Field(
        False,
        description="/ask also returns `raw`, the generator's unverified text (debugging only: with an "
        "LLM configured it makes the server an open LLM proxy)",
    )
    access_log: bool = Field(True, description="the server writes one JSON access-log line per request")
    search_rate: float | None = Field(
        None, gt=0, description="bench: requests/s on /search (default: the /ask rate, MLSD_BENCH_RATE)"
    )
    # set by `mlsd rag bench --data beir:<folder>` for the server and locust it starts
    variant: str | None = Field(None, description="the artifact folder served instead of MLSD_SCALE's (data_beir_<hash>)")  # fmt: skip
    questions_file: Path | None = Field(None, description="bench: a JSON list of questions locust asks (the BEIR queries)")  # fmt: skip


SETTINGS = RagSettings

# Artifacts, relative to the artifact folder <MLSD_DATA_DIR>/rag/<scale>/ (infra.artifacts.Artifacts)
KB_DIR = "kb"
ARTICLES = "kb/articles"  # one Markdown file per article version (data)
QUESTIONS = "kb/questions.jsonl"  # the evaluation questions with their gold sections (data)
INDEX_DIR = "index"  # FAISS vectors, chunks, token and sentence embeddings; BM25 is rebuilt on load (index)
INDEX_FILE = (
    "index/manifest.json"  # names the current files (index.SearchIndex.save): the index is there when this is
)
ENCODER_FP32 = "encoder/minilm-fp32.onnx"  # MiniLM exported from the package's weights (encoder)
ENCODER_INT8 = "encoder/minilm-int8.onnx"  # the same, MatMul weights int8 per channel (encoder)
ENCODER_FILES = {"onnx": ENCODER_FP32, "onnx-int8": ENCODER_INT8}  # MLSD_RAG_ENCODER -> file ("torch": none)
RERANKER = "model/reranker.txt"  # LightGBM text model (train)
ANSWER_CONFIG = "model/config.json"  # the refusal threshold train chose (answer.AnswerConfig)
EVAL = "eval.json"  # the numbers `mlsd rag eval` printed (eval)
IN_DOMAIN_RERANKER = "model/reranker-in-domain.txt"  # LightGBM on the BEIR corpus's own train split (tune)
TUNE = "tune.json"  # the validation table and the test rows `mlsd rag tune` printed (tune)


# ---------------------------------------------------------------------------------------------- step configs
@dataclass
class RealDataFlags(StepConfig):
    """--data beir:<folder>: a public BEIR dataset instead of the help center, in its own artifact folder."""

    data: str = flag("", "a BEIR folder instead of the help center: beir:<folder with corpus.jsonl, queries.jsonl, qrels/>")  # fmt: skip
    beir_split: str = flag("test", "the qrels file of --data / --beir (qrels/<split>.tsv)")

    def __post_init__(self) -> None:
        if not self.data:
            return
        kind, _, path = self.data.partition(":")
        if kind != "beir" or not path:
            raise ConfigError(f"--data must be beir:<folder> (got {self.data!r})")
        if not Path(path).is_dir():
            raise ConfigError(f"--data {self.data}: {path} is not a folder")

    def variant(self) -> str:
        """data_beir_<hash of the resolved folder>: a BEIR run never mixes with the help center's artifacts."""
        if not self.data:
            return self.scale
        return "data_beir_" + hashlib.sha1(str(Path(self.data[5:]).resolve()).encode()).hexdigest()[:8]


@dataclass
class DataConfig(RealDataFlags):
    beir_out: Path | None = flag(None, "also write the KB as a small BEIR folder here")


@dataclass
class EncoderConfig(RealDataFlags):
    """No flags of its own: the export reads the installed package's weights."""


EncoderName = Literal["torch", "onnx", "onnx-int8"]


@dataclass
class IndexConfig(RealDataFlags):
    folder: Path | None = flag(
        None, "index this folder of Markdown/HTML articles instead of the generated KB"
    )
    encoder: EncoderName = flag(
        help="how MiniLM runs: torch, onnx (fp32) or onnx-int8 (default: MLSD_RAG_ENCODER)",
        factory=lambda: SETTINGS().encoder,
    )

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        if self.folder is not None and not self.folder.is_dir():
            raise ConfigError(f"--folder {self.folder} is not a folder")


@dataclass
class UpdateConfig(StepConfig):
    add: list[Path] = flag(factory=list, help="an article file (.md/.html) or folder to add or change")
    delete: list[str] = flag(factory=list, help="an article id to delete (every version)")

    def __post_init__(self) -> None:
        if not (self.add or self.delete):
            raise ConfigError("update needs --add FILE|DIR or --delete ARTICLE_ID")
        missing = [str(p) for p in self.add if not p.exists()]
        if missing:
            raise ConfigError(f"--add {missing[0]} does not exist")


@dataclass
class TrainConfig(RealDataFlags):
    mlflow: bool = flag(True, "log the reranker run to MLflow")


@dataclass
class TuneConfig(RealDataFlags):
    train_split: str = flag(
        "train", "the qrels file the in-domain reranker learns from (qrels/<split>.tsv of --data)"
    )

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        if not self.data:
            raise ConfigError("tune needs --data beir:<folder> (a corpus with its own train judgements)")
        if self.train_split == self.beir_split:
            raise ConfigError(
                f"--train-split and --beir-split are both {self.train_split!r}: tuning on the test split"
            )


GeneratorName = Literal["extractive", "smollm", "openai"]


@dataclass
class EvalConfig(RealDataFlags):
    split: Literal["heldout", "tune", "all"] = flag("heldout", "which questions")
    limit: int = flag(0, "only the first N questions (0: all)")
    llm: bool = flag(False, "also score the SmolLM2-135M generator (slow on CPU)")
    llm_only: bool = flag(False, "only the generation rows, on the first --llm-limit questions")
    llm_limit: int = flag(12, "questions the LLM generators answer")
    attribution: bool = flag(True, "cite uncited generator sentences post hoc when a passage supports them")
    openai_url: str | None = flag(
        None, "also score an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000"
    )
    openai_model: str = flag("default", "the model name sent to --openai-url")
    beir: Path | None = flag(
        None, "score retrieval on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) instead"
    )
    out: Path | None = flag(None, "also write the tables here (Markdown)")

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        if self.beir is not None and not self.beir.is_dir():
            raise ConfigError(f"--beir {self.beir} is not a folder")
        if self.limit < 0 or self.llm_limit < 1:
            raise ConfigError("--limit must be >= 0 and --llm-limit >= 1")


@dataclass
class AskConfig(RealDataFlags):
    question: str | None = flag(None, "the question, in quotes", positional=True)
    generator: GeneratorName = flag("extractive", "who writes the answer (the verifier checks it either way)")
    openai_url: str | None = flag(
        help="the endpoint of --generator openai (default: MLSD_RAG_OPENAI_URL)",
        factory=lambda: SETTINGS().openai_url,
    )
    openai_model: str = flag(
        help="the model name sent to --openai-url (default: MLSD_RAG_OPENAI_MODEL)",
        factory=lambda: SETTINGS().openai_model,
    )

    def __post_init__(self) -> None:
        RealDataFlags.__post_init__(self)
        self.question = (self.question or "").strip()
        if not self.question:
            raise ConfigError("ask needs a question: mlsd rag ask 'how do I reset my password?'")
        if self.generator == "openai" and not self.openai_url:
            raise ConfigError("--generator openai needs --openai-url URL (or MLSD_RAG_OPENAI_URL)")


@dataclass
class ServeConfig(ServeFlags, RealDataFlags):
    """/ask, /search and the page at /."""


@dataclass
class BenchConfig(BenchFlags, RealDataFlags):
    rate: float = flag(20.0, "requests/s on each of /ask and /search")
    duration: int = flag(60, "seconds of each counted run")

    def __post_init__(self) -> None:
        BenchFlags.__post_init__(self)
        RealDataFlags.__post_init__(self)


@dataclass
class CostConfig(StepConfig):
    prompt_tokens: int = flag(1000, "tokens per prompt (5 passages + question)")
    answer_tokens: int = flag(100, "tokens per answer")
    batch: int = flag(64, "concurrent sequences decoding together")

    def __post_init__(self) -> None:
        if min(self.prompt_tokens, self.answer_tokens, self.batch) < 1:
            raise ConfigError("--prompt-tokens, --answer-tokens and --batch must be >= 1")
