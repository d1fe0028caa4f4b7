"""rag_search: customer-support search with citations (retrieval, reranking, grounded generation, evaluation)."""

from infra.system import SystemSpec

SYSTEM = SystemSpec(
    name="rag",
    package="systems.rag_search",
    question="Design an LLM-powered customer-support search with citations: retrieval, reranking, generation, evaluation.",
    steps=(
        "data",
        "encoder",
        "index",
        "train",
        "eval",
        "tune",
        "update",
        "ask",
        "serve",
        "bench",
        "cost",
        "all",
    ),
    status="working",
)
