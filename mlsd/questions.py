"""`mlsd questions [--search WORD]`: every interview question this repository answers, where, and with what evidence.

This module is the one source of truth: QUESTIONS.md at the top of the repository is its Markdown rendering
(`mlsd questions --markdown > QUESTIONS.md`), and tests/mlsd/test_questions.py checks that the two agree, that
every file and heading named here exists, and that every command is a real `mlsd` step, fundamentals topic or
exercise.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table

from infra.console import console
from infra.steps import OneLineParser

ROUNDS = ("system design", "coding", "infra", "technical")


@dataclass(frozen=True)
class Question:
    round: str  # one of ROUNDS
    question: str
    answer: str  # two sentences: the short answer and the number that backs it
    file: str  # path from the repository root
    heading: str  # the Markdown heading in `file` (without the #s) whose section answers it in full
    command: str  # the `mlsd` command that prints the evidence
    also: tuple[str, ...] = ()  # common rewordings of the question
    exercise: str | None = None  # `mlsd exercise start <topic>` practises it

    def text(self) -> str:
        """Everything a search looks through."""
        return " ".join([self.round, self.question, *self.also, self.answer, self.file, self.heading,
                         self.command, self.exercise or ""])  # fmt: skip

    def link(self) -> str:
        return f"{self.file}#{github_anchor(self.heading)}"


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


RECSYS = "systems/recsys_two_tower/DESIGN.md"
CTR = "systems/ctr/DESIGN.md"
FRAUD = "systems/fraud_edge/DESIGN.md"
RAG = "systems/rag_search/DESIGN.md"
FUNDAMENTALS = "fundamentals/README.md"
FUNDAMENTALS_TABLE = "fundamentals — the short, sharp questions of an MLE loop"
SERVING = "fundamentals/SERVING.md"

QUESTIONS: tuple[Question, ...] = (
    # ------------------------------------------------------------------------------------ system design
    Question(
        "system design",
        "Design a video-feed recommender for 100M users at 50 ms p99.",
        "Two-tower retrieval (in-batch softmax with logQ correction) into a FAISS IVF-PQ index cuts 1M videos to "
        "200 in a few ms; a ranker reorders them on (user, candidate) features, a policy layer caps creators, and "
        "Feast serves fresh user features. Medium scale: ANN recall@100 9.2x most-popular, the ranker lifts "
        "nDCG@10 0.082 -> 0.102, p99 9 ms at 200 req/s on one core.",
        RECSYS,
        "Read in this order",
        "mlsd recsys all --scale small",
        also=(
            "Design YouTube / TikTok recommendations.",
            "Design candidate generation and ranking for a feed.",
        ),
    ),
    Question(
        "system design",
        "Design ad click-through-rate prediction, and A/B-test it.",
        "Hashed logistic regression as the baseline and DeepFM on Feast features with a point-in-time join and a "
        "temporal split; negatives are downsampled and the logit shifted back so P(click) stays calibrated, "
        "because the auction charges by it. DeepFM AUC 0.7421 against a Bayes ceiling of 0.7492, calibration "
        "1.012; a user-randomised A/B with CUPED, mSPRT and an SRM check promotes it.",
        CTR,
        "Read in this order",
        "mlsd ctr all",
        also=("Design an ads ranking model.", "Predict P(click) for an ad auction."),
    ),
    Question(
        "system design",
        "Design fraud detection at the edge: a card terminal decides in milliseconds, sometimes offline.",
        "Velocity features (card and terminal counts and sums over 10 min, 1 h, 24 h) defined once and computed "
        "both in batch and incrementally; a small ONNX MLP (fp32 or int8) on the device, with review and decline "
        "thresholds chosen by cost. PR-AUC 0.943, p99 5 ms at 300 req/s, 77% of the cost saved against rules "
        "alone; signed bundles roll forward and back.",
        FRAUD,
        "Read in this order",
        "mlsd fraud all",
        also=("Design real-time fraud detection for payments.", "Design a transaction risk-scoring service."),
    ),
    Question(
        "system design",
        "Design an LLM-powered customer-support search with citations.",
        "Hybrid retrieval (BM25 + MiniLM dense, fused), a LightGBM reranker whose probability also decides when "
        "to refuse, and a generator whose every sentence must cite a passage and is verified against it. "
        "Held-out Recall@5 0.933, citation precision 1.0, refusal accuracy 0.810; /ask p95 79 ms at 20 req/s.",
        RAG,
        "Read in this order",
        "mlsd rag all",
        also=("Design a RAG system.", "Design question answering over a help center or internal documents."),
    ),
    # ------------------------------------------------------------------------------------------- coding
    Question(
        "coding",
        "Write a numerically stable softmax and log-sum-exp.",
        "Subtract the row's max before exp (softmax is shift-invariant): the largest exponent is exp(0) = 1 and "
        "the denominator is at least 1. float32 exp overflows at 88.72284, so the naive formula gives NaN rows "
        "from logits of +89; log_softmax = (x - m) - log(sum exp(x - m)) stays finite where log(softmax) is -inf.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals softmax",
        exercise="softmax",
    ),
    Question(
        "coding",
        "Write vectorised k-means with k-means++ initialisation.",
        "k-means++ draws the first center uniformly and each next one with probability proportional to D(x)^2, "
        "the squared distance to the nearest center chosen so far; Lloyd steps are one (n, k) distance matrix "
        "and a scatter-add. With the same init the inertia equals sklearn's to 4.4e-15, 236x faster than loops.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals kmeans",
        exercise="kmeans-pp",
    ),
    Question(
        "coding",
        "Make this slow per-user pandas loop fast, and prove the output is identical.",
        "Sort once by (user, ts), mark session starts with a shifted comparison, number them with a cumulative "
        "sum, and count a time window with one searchsorted on a combined (user, ts) key. 102x faster than "
        "iterrows at 10^5 rows, identical output; 10^6 rows in 0.36 s.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals vectorise",
        exercise="vectorise",
        also=("Vectorise a groupby().apply.",),
    ),
    Question(
        "coding",
        "Walk one output token through multi-head attention, with a KV cache.",
        "Project the new token to q, k, v; append k, v to the cache; scores = q K^T / sqrt(d_head) over every "
        "cached key (no mask needed), softmax, weight V, merge heads, W_o. Decoding through the cache equals the "
        "full causal forward to 4.5e-7; a decode step costs 8D^2 + 4tD FLOPs instead of t times that.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals attention",
        exercise="attention-kv",
        also=("How does a KV cache work, and how big is it?",),
    ),
    Question(
        "coding",
        "Implement the two-tower in-batch softmax loss with logQ correction.",
        "Each user must pick its own video among the batch's videos: logits = u v^T / tau - log Q(v), cross "
        "entropy against the diagonal. Popular videos are over-represented as in-batch negatives; subtracting "
        "log Q stops the model from learning to push them down.",
        RECSYS,
        "4. Model and loss",
        "mlsd recsys train",
        exercise="two-tower-loss",
        also=("What is sampling bias in in-batch negatives?",),
    ),
    Question(
        "coding",
        "Implement recall@k and nDCG@k.",
        "recall@k = |top-k ∩ relevant| / |relevant|; nDCG@k sums 1/log2(rank + 1) over the hits and divides by "
        "the same sum for min(|relevant|, k) hits at the top. The project's versions are checked against "
        "trec_eval and score every system's offline table.",
        RECSYS,
        "7. Offline evaluation → online A/B",
        "mlsd recsys eval",
        exercise="ranking-metrics",
    ),
    Question(
        "coding",
        "Implement the population stability index (PSI).",
        "Bin both samples on the reference's quantiles, clip the bin shares at a small eps, and sum "
        "(live% - ref%) * ln(live% / ref%); < 0.1 is stable, > 0.25 a major shift. In ctr, PSI 0.29 is what "
        "gives away a leaked feature.",
        CTR,
        "8. Monitoring drift (`infra/monitoring/`) and which signals mean harm",
        "mlsd ctr monitor",
        exercise="psi",
    ),
    Question(
        "coding",
        "Implement CUPED variance reduction for an A/B test.",
        "y_cuped = y - theta (x - mean x) with theta = cov(x, y) / var(x) and x a pre-period covariate: the mean "
        "and the effect are unchanged and the variance falls by 1 - rho^2. The engine's simulations match "
        "1 - rho^2 within 0.06; in the ctr experiment it cut the variance only 3-4%.",
        CTR,
        "6. A/B testing engine (`infra/experiments/`)",
        "mlsd ctr experiment",
        exercise="cuped",
    ),
    Question(
        "coding",
        "Count a card's transactions in a sliding time window, in batch and online.",
        "The window is half-open, (ts - w, ts], the event itself included: in batch one searchsorted on a sorted "
        "(card, ts) key, online a per-card list evicted at ts - w. Integers only, so both paths agree bit for "
        "bit, which a skew test replays.",
        FRAUD,
        "5. Features: one definition, two paths (`features/velocity.py`)",
        "mlsd fraud train",
        exercise="velocity",
    ),
    # -------------------------------------------------------------------------------------------- infra
    Question(
        "infra",
        "Does data-parallel training (DDP) give the same weights as one process? What does all-reduce cost?",
        "Yes, to float rounding: 2 gloo processes x 32 match one process on batch 64 to 4.5e-8, as does gradient "
        "accumulation. A ring all-reduce sends 2(N-1)/N x the gradient size per rank (56 GB per rank for an 8B "
        "model in fp32 at N = 8).",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals distributed",
        also=("How do you train on many GPUs?",),
    ),
    Question(
        "infra",
        "How much GPU memory does training, and serving, this model need?",
        "Training with AdamW in bf16-mixed: weights 2 + master 4 + grads 2 + Adam 8 bytes per parameter, plus "
        "activations (checkpointing trades them for compute). Serving: the weights plus a KV cache that grows "
        "per token; each formula is checked against real tensor bytes.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals gpu-mem",
        also=("Will an 8B model fit on one 80 GB GPU?",),
    ),
    Question(
        "infra",
        "What does int8 quantization buy, and when is it slower?",
        "On a 256-1024-1024-10 MLP: 4x smaller and faster at every batch with accuracy within 0.1 points. On a "
        "width-64 model int8 is slower at batch 1: quantize and dequantize cost more than the small matmul saves.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals quantization",
    ),
    Question(
        "infra",
        "How would you serve this model, and where does the latency go?",
        "FastAPI in front of ONNX Runtime (one intra-op thread) and FAISS, every stage timed into Server-Timing "
        "and /stats, a degraded answer rather than an error when the store is slow. recsys: seven stages, the ANN "
        "40% of 3.1 ms CPU per request, p99 9 ms at 200 req/s on one pinned core, the knee at 254 req/s per core.",
        RECSYS,
        "6. Serving path and the latency budget",
        "mlsd recsys bench",
        also=("Design a model-serving stack.", "How do you load-test an ML service against its SLO?"),
    ),
    Question(
        "infra",
        "Would you batch requests in front of the model (dynamic batching)?",
        "Only when the model call dominates and load nears batch-1 capacity: a queue (max batch 32, max wait 2 ms) "
        "in front of an ONNX MLP cut p99 62.8 -> 19.2 ms at 0.8x capacity and kept up at 1.5x (203 vs 120 req/s); "
        "at 0.3x it only added latency (p50 6.9 -> 9.6 ms).",
        SERVING,
        "Dynamic batching",
        "mlsd fundamentals batching",
        also=("How does Triton's dynamic batcher work?", "Throughput vs latency when batching?"),
    ),
    Question(
        "infra",
        "Static vs continuous batching for an LLM, and how many sequences fit in the KV cache?",
        "Static batching runs each batch to its longest answer; continuous batching refills a slot the step it "
        "frees: 6,741 vs 1,628 tokens/s at batch 64 for Llama-3.1-8B on an H100 (memory-bound model). Paged KV "
        "fits 382 sequences where reserving the maximum length fits 211.",
        SERVING,
        "LLM serving: continuous batching and the KV cache",
        "mlsd fundamentals llm-serving",
        also=("What is PagedAttention?", "Why is vLLM faster than a plain generate loop?"),
    ),
    Question(
        "infra",
        "ZeRO stages and FSDP: how much memory per GPU?",
        "ZeRO-1 shards optimizer states, ZeRO-2 gradients too, ZeRO-3 (FSDP FULL_SHARD) the weights too: an 8B "
        "model with AdamW in bf16-mixed needs 119.2 GiB per GPU under DDP, 27.9 with ZeRO-2 and 14.9 with ZeRO-3 "
        "on 8 GPUs, before activations; the paper's 7.5B-on-64 figures are reproduced in a test.",
        SERVING,
        "Memory per GPU: ZeRO and FSDP",
        "mlsd fundamentals gpu-mem",
        also=("How do you fine-tune a model that does not fit on one GPU?",),
    ),
    Question(
        "infra",
        "What does int4 weight quantization cost compared with int8?",
        "Group-wise round-to-nearest int4 of MiniLM's Linear weights: 7.8x smaller at group 128, but embedding "
        "cosine to fp32 falls to 0.928 (int8 per channel: 0.9995) and the help center's dense nDCG@10 0.684 -> "
        "0.653 (int8: 0.681); GPTQ / AWQ round better than RTN.",
        SERVING,
        "Weight quantization: int4 next to int8",
        "mlsd fundamentals int4",
        also=("GPTQ, AWQ or round-to-nearest?",),
    ),
    Question(
        "infra",
        "Triton, TorchServe, vLLM, Ray Serve, KServe...: which serving stack, for which model?",
        "Small models in process (ONNX Runtime): a network hop would cost more than recsys's 0.09 ms ranker or "
        "fraud's 4.8 us model; Triton for shared GPU models that batch; vLLM or SGLang for an LLM; KServe is the "
        "Kubernetes layer that runs one of them; TorchServe is archived.",
        SERVING,
        "Which stack each system would use at scale",
        "mlsd fundamentals batching",
        also=("Design a model-serving platform.",),
    ),
    Question(
        "infra",
        "What does serving an LLM behind RAG cost, per answer and per GPU?",
        "The generator is the cost, and decode is memory-bound: an 8B model in bf16 needs 128 KiB of KV cache per "
        "token, one H100 holds 388 sequences and gives ~85 answers/s at batch 64, $0.008 per 1,000 answers; one "
        "answer takes ~0.8 s, so an LLM path needs streaming and its own SLO.",
        RAG,
        "10. Cost and latency with a hosted LLM",
        "mlsd rag cost",
    ),
    Question(
        "infra",
        "Design a feature store.",
        "Feast views keyed by entity: a point-in-time join for training (every row sees the snapshot as of its own "
        "timestamp), the same views materialised to an online store (SQLite or Redis), and one transform shared "
        "by training and serving. A test checks the Feast rows equal the simulator's truth on every row.",
        CTR,
        "3. Features: one definition for training and serving (the feature-store answer)",
        "mlsd ctr train",
        also=("How do you avoid leakage when joining features to labels?",),
    ),
    Question(
        "infra",
        "How does the online feature store scale to 100M users?",
        "Shard by user id in a Redis Cluster: one key per request, 680 B per user measured, so 68 GB for 100M "
        "users. The feature read stays about a millisecond at p50 on a 3-master cluster.",
        RECSYS,
        "3a. The online store as a Redis Cluster",
        "mlsd recsys features",
    ),
    Question(
        "infra",
        "Which approximate-nearest-neighbour index, at which catalog size?",
        "Measure recall@100 against exact search and latency per index family: IVF + 4-bit fast-scan PQ with "
        "exact re-scoring serves 1M videos in 1.2 ms, while HNSW reaches only recall@100 0.28 on two-tower "
        "queries. The catalog curve goes to 10M videos.",
        RECSYS,
        "The catalog curve (`mlsd recsys sweep`; report: benchmarks/results/recsys/sweep/report.md)",
        "mlsd recsys sweep",
        also=("HNSW or IVF-PQ?",),
    ),
    Question(
        "infra",
        "How do you scale a recommender to 100M users: QPS, memory, cores?",
        "Back-of-envelope with every assumption a flag: 20,833 peak QPS, 68 GB of user features sharded by user, "
        "a 3.6 GB IVF-SQ8 index per replica, 82 serving cores from the measured knee. User embeddings are not "
        "stored: the user tower runs per request.",
        RECSYS,
        "9. Scaling to 100M users",
        "mlsd recsys capacity",
    ),
    Question(
        "infra",
        "When do you shard an embedding table, and what does hashing the ids cost?",
        "100M users x 64 dims x 4 B is 25.6 GB, ~77 GB with Adam's moments: past one GPU, shard it row-wise "
        "(TorchRec) or hash ids into fewer rows. Measure first: here recall@100 stays 0.44-0.46 from 32,768 "
        "buckets down to 2, because the features already carry the user's taste.",
        RECSYS,
        "3c. The user-id embedding table: when to shard, what hashing costs",
        "mlsd recsys capacity",
    ),
    Question(
        "infra",
        "How do you version, ship and roll back a model (model lifecycle)?",
        "Every run goes to MLflow and serving loads by alias (champion / challenger); an A/B promotes. At the "
        "edge a bundle carries the model, its feature-spec hash, thresholds, checksums, a canary and a signature; "
        "any failed check keeps the previous bundle serving, and rollback points LIVE back one version.",
        FRAUD,
        "9. Model update and rollback at the edge (`bundle.py`)",
        "mlsd fraud train",
        also=("Champion / challenger: how does a new model reach production?",),
    ),
    Question(
        "infra",
        "What runs on the device and what in the cloud?",
        "The same EdgeScorer class runs on both sides; only the velocity store differs: the device sees its own "
        "traffic (a lower bound on card features), the cloud sees every terminal in Redis. Redis down: local "
        "features, flagged degraded; no model: hard rules, flagged rules_only.",
        FRAUD,
        "2. Edge vs cloud split",
        "mlsd fraud score",
    ),
    # ---------------------------------------------------------------------------------------- technical
    Question(
        "technical",
        "Why two-tower retrieval over a cross-encoder for the first stage?",
        "A two-tower model lets the catalog side be precomputed and indexed, so a request is one tower pass and an "
        "ANN lookup (0.36 ms); a cross model must score every (user, video) pair: 2,796 ms over 1M videos. The "
        "joint model belongs after retrieval, on hundreds of candidates.",
        RECSYS,
        "5. Candidate generation → ranking",
        "mlsd recsys cross",
        also=("Bi-encoder vs cross-encoder?", "Why retrieve and then rank?"),
    ),
    Question(
        "technical",
        "Full fine-tune vs LoRA vs prompt tuning: parameters, memory, accuracy?",
        "LoRA r=4 trains 2.1% of the parameters with 17 KiB of Adam state against 799 KiB for full fine-tuning, and "
        "matches it (99.8% vs 99.6%); prompt tuning trains 642 parameters and loses 4 points. LoRA's B A folds "
        "into W after training: no serving cost.",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals adapters",
        exercise="lora",
    ),
    Question(
        "technical",
        "Why does batch norm break at inference?",
        "In train mode it normalises with the current batch's statistics, so a forgotten eval() makes outputs "
        "depend on the batch (27% accuracy on single-class batches, an error at batch size 1); in eval mode the "
        "running statistics go stale under a shift (61.8%, back to 94.3% after recalibrating them).",
        FUNDAMENTALS,
        FUNDAMENTALS_TABLE,
        "mlsd fundamentals batchnorm",
        exercise="batchnorm",
        also=("Batch norm vs layer norm at serving time?",),
    ),
    Question(
        "technical",
        "Your model's AUC is high offline but the online lift is flat: what do you investigate?",
        "Six runnable causes: a leaked feature (AUC 0.88, true lift 0), position learned as relevance, "
        "miscalibration under a revenue KPI, an offline metric that is not the KPI, novelty, and a real gain. "
        "Each has its diagnostic: PSI train vs serving, per-position AUC, calibration, per-request AUC, daily lift.",
        CTR,
        '7. "High offline AUC, flat online lift" — six runnable cases',
        "mlsd ctr experiment",
        also=("Offline metric vs business KPI: why do they disagree?",),
    ),
    Question(
        "technical",
        "Position bias: how do you keep a click model from learning the slot?",
        "Make the position a training feature and fix it at serving (score everyone as if in slot 1); check AUC "
        "within each position. A challenger without the slot credits promoted ads with the top slots' clicks: "
        "offline AUC 0.7294 -> 0.7323, true online lift -0.65%.",
        CTR,
        '7. "High offline AUC, flat online lift" — six runnable cases',
        "mlsd ctr experiment --scenario position-as-relevance",
    ),
    Question(
        "technical",
        "Your results come from a simulator: does the design hold on real data?",
        "The simulator decides some conclusions by construction (it is built so that DeepFM's interaction term "
        "matters); `--data criteo:<path>` runs the same LR and DeepFM on the public Criteo log, with the "
        "published figures beside ours, and recsys does the same on MovieLens.",
        CTR,
        "11. Real data: Criteo",
        "mlsd ctr eval --data criteo:<path>",
        also=("How would you validate on public data?",),
    ),
    Question(
        "technical",
        "Your two-tower loses to most-popular on MovieLens: why, and what do you change?",
        "Three faults: a point-in-time join that dropped 47% of the rows (ratings in the same second), daily "
        "features that were empty in training but full at serving (skew), and too little capacity and too cold "
        "a softmax; fixed and tuned on validation only, it goes from nDCG@10 0.104 to 0.458 (most-popular 0.243, "
        "published BPR 0.442).",
        RECSYS,
        "11. On real data: MovieLens (`--data movielens:<folder>`)",
        "mlsd recsys tune --data movielens:<folder> --protocol random --final",
        also=(
            "Why does a model that wins on the simulator lose on real data?",
            "How do you tune without touching test?",
        ),
    ),
    Question(
        "technical",
        "On a temporal split your recommender barely beats most-popular: why, and is it a bad model?",
        "Two thirds of ML-100k's temporal test users joined after the split: no model beats popularity for a user "
        "it has never seen (two-tower 0.440 vs 0.451 on them), while on the warm users it wins by 41% (0.209 vs "
        "0.148); report cold and warm apart, and check the baseline's fallback for users with no history.",
        RECSYS,
        "The temporal protocol: most test users arrive after the split",
        "mlsd recsys tune --data movielens:<folder> --protocol temporal --final",
        also=("How do you evaluate a recommender for new users?",),
    ),
    Question(
        "technical",
        "How do you monitor drift, and which signals mean real degradation?",
        "PSI, KS, Wasserstein and Jensen-Shannon on features, prediction drift, CBPE, and calibration and AUC on "
        "delayed labels. Calibration on delayed labels caught 2 of 2 harmful shifts with no false alarm; feature "
        "drift fired on harmless shifts and missed concept drift: use it to explain an alert, not to raise one.",
        CTR,
        "8. Monitoring drift (`infra/monitoring/`) and which signals mean harm",
        "mlsd ctr monitor",
        also=("Data drift vs concept drift?",),
        exercise="psi",
    ),
    Question(
        "technical",
        "Train/serving skew: two real causes, and how do you detect it?",
        "A missing value filled differently (0 at serving, a sentinel in training) and a leaky join (training saw "
        "a later snapshot); neither moves the marginal much (PSI 0.004-0.006). Log features as served with a "
        "request id and join them to the training rows: the per-feature mismatch rate finds both.",
        CTR,
        "9. Train/serving skew: two real causes, and the detector",
        "mlsd ctr skew",
        also=("Online/offline feature parity?",),
    ),
    Question(
        "technical",
        "How do you A/B test a model whose results change user behaviour?",
        "Randomise the unit the effect lives in (the user), analyse at that unit, check the sample ratio first, "
        "pre-register the KPI, use a sequential test if you will peek, watch the daily lift for novelty; when arms "
        "share a market, randomise clusters or time slices. With 14 peeks mSPRT stays at or under 5% false positives.",
        CTR,
        "6. A/B testing engine (`infra/experiments/`)",
        "mlsd ctr experiment",
        also=("Interference between arms?", "Why not peek at a fixed-horizon test?"),
    ),
    Question(
        "technical",
        "Offline metric or business KPI: how do you pick thresholds?",
        "Put the decision in money: a missed fraud costs its amount, a false decline 15 EUR, a review 3 EUR under "
        "a 1% capacity; grid-search the two thresholds to minimise total cost of the policy actually served. It "
        "saves 77% of the cost of rules alone, which no AUC shows.",
        FRAUD,
        "7. Decisions (`decision.py`)",
        "mlsd fraud eval",
    ),
    Question(
        "technical",
        "Labels arrive weeks late and fraud is 0.5% of traffic: how do you train and evaluate?",
        "Split by time with a 7-day gap and train only on the chargebacks known at the cutoff (48 of 521 frauds "
        "were still labelled legit); weight positives in the loss instead of resampling, and judge by PR-AUC and "
        "recall at 1% FPR, never accuracy or ROC-AUC.",
        FRAUD,
        "4. Imbalance and label delay",
        "mlsd fraud train",
    ),
    Question(
        "technical",
        "Why calibrate a CTR model, and what does negative downsampling do to it?",
        "The auction ranks by P(click) x bid and charges by it, so a ranking metric is not enough. Downsampling "
        "negatives to w makes the model over-predict (1.77x at w = 0.5); adding log w to the logit undoes it "
        "exactly (calibration 1.004 over 3 seeds).",
        CTR,
        "4. Models",
        "mlsd ctr eval --seeds 3",
    ),
    Question(
        "technical",
        "Cold start: a new user, a new video?",
        "A new video hashes to bucket 0 and is embedded from topic, creator, duration, age, popularity and "
        "content, so it is recommendable before anyone watches it; an unknown user gets the last 7 days' trending "
        "videos, flagged cold_start.",
        RECSYS,
        "4. Model and loss",
        "mlsd recsys eval",
    ),
    Question(
        "technical",
        "BM25, dense, or both for retrieval?",
        "Both: BM25 wins on exact tokens (error codes, plan names), dense on paraphrase and vague wording; fuse "
        "the two lists and let a reranker decide. The eval prints each retriever alone and fused.",
        RAG,
        "4. Hybrid retrieval (`retrieve.py`)",
        "mlsd rag eval",
        also=("Keyword vs semantic search?",),
    ),
    Question(
        "technical",
        "How do you stop a RAG system hallucinating, and when should it refuse?",
        "Every sentence must carry a citation and is verified against the cited passage (numbers must appear, "
        "content words overlap) or dropped; the reranker's probability below a tuned threshold means refuse. "
        "Citation precision 1.0, refusal accuracy 0.810 on held-out questions.",
        RAG,
        "6. Generation and grounding (`generate.py`, `answer.py`)",
        "mlsd rag eval",
        also=("Grounding and citations in LLM answers?",),
    ),
    Question(
        "technical",
        "Prompt injection and PII in a support assistant?",
        "Article text is data: the extractive generator never picks instruction-like sentences, LLM prompts "
        "fence passages, and the verifier drops instruction-like sentences even when quoted. Questions are logged "
        "with emails, cards and phone numbers redacted.",
        RAG,
        "7. Safety",
        "mlsd rag ask",
    ),
    Question(
        "technical",
        "Fraudsters adapt and labels are late: what do you monitor?",
        "Decile PSI on scores is blind to a fraud wave at 0.5% prevalence (0.039 under 4x attacks, 0.042 in the "
        "control); the tail rate, the share above validation's 99th-percentile score, moved 0.0100 -> 0.0235.",
        FRAUD,
        "10. Monitoring and adversarial adaptation (`evaluate.py`)",
        "mlsd fraud eval",
    ),
)


def matching(word: str | None) -> list[Question]:
    """The questions whose text contains `word` (case-insensitive); all of them without one."""
    if not word:
        return list(QUESTIONS)
    return [q for q in QUESTIONS if word.lower() in q.text().lower()]


def markdown() -> str:
    """QUESTIONS.md, rendered from QUESTIONS."""
    lines = [
        "# Questions mlsd answers",
        "",
        "Every interview question this repository answers: a two-line answer, the section that answers it in "
        "full, the command",
        "that prints its evidence and, where there is one, the exercise that practises it (`mlsd exercise start "
        "<topic>`).",
        "`mlsd questions --search WORD` prints the same list as a table. This file is generated from "
        "[mlsd/questions.py](mlsd/questions.py)",
        "by `mlsd questions --markdown > QUESTIONS.md`; a test fails when the two differ.",
    ]
    for round_ in ROUNDS:
        lines += ["", f"## {round_.capitalize()}"]
        for q in QUESTIONS:
            if q.round != round_:
                continue
            lines += ["", f"### {q.question}", ""]
            if q.also:
                lines += ["*Also asked:* " + " · ".join(q.also), ""]
            lines.append(q.answer)
            where = f"**Read:** [{q.file} § {q.heading.replace('`', '')}]({q.link()}) · **Evidence:** `{q.command}`"
            if q.exercise:
                where += f" · **Practise:** `mlsd exercise start {q.exercise}`"
            lines += ["", where]
    return "\n".join(lines) + "\n"


def print_table(questions: Sequence[Question], title: str) -> None:
    table = Table(title=title, show_lines=True, expand=True)
    table.add_column("round", no_wrap=True)
    for col, ratio in (("question", 4), ("answer", 8), ("read", 5), ("evidence", 4)):
        table.add_column(col, ratio=ratio, overflow="fold")
    for q in questions:
        practise = f"\nmlsd exercise start {q.exercise}" if q.exercise else ""
        table.add_row(q.round, q.question, q.answer, f"{q.file}\n§ {q.heading}", q.command + practise)
    console.print(table)


def main(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd questions", description=__doc__.splitlines()[0])
    parser.add_argument("--search", metavar="WORD", help="only the questions whose text contains WORD")
    parser.add_argument("--markdown", action="store_true", help="print QUESTIONS.md instead of the table")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # OneLineParser wrote the bad flag as one line, or --help printed the usage
        return int(exc.code or 0)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    found = matching(args.search)
    if not found:
        sys.stderr.write(f"mlsd questions: no question mentions '{args.search}'; try a shorter word\n")
        return 1
    title = f"mlsd questions ({len(found)} of {len(QUESTIONS)})" + (
        f" matching '{args.search}'" if args.search else ""
    )
    print_table(found, title)
    return 0
