"""fraud_edge: fraud scoring at the edge — streaming velocity features, ONNX int8 model, cost-based decisions."""

from infra.system import SystemSpec

SYSTEM = SystemSpec(
    name="fraud",
    package="systems.fraud_edge",
    question="Design fraud detection at the edge (a card terminal must decide in milliseconds, sometimes offline)",
    steps=("data", "train", "eval", "serve", "score", "bench", "all"),
    status="working",
)
