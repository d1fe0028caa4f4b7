"""`mlsd ctr experiment`: online A/B tests of ranking policies against the known click model.

A request brings K candidate ads; the policy ranks them by its model's P(click) (or P(click) x bid in
the auction) and shows the top S in slots 1..S; the simulator draws clicks from the true model, with
position bias. Users are hashed into arms (infra.experiments.buckets); the analysis is per user:
Welch's t-test on clicks (or revenue) per user, CUPED with the user's pre-period clicks, an SRM check,
and mSPRT p-values read daily (peeking-safe). Because the truth is known, every A/B also reports the
TRUE lift: expected clicks of both policies on the same requests.

The scenarios reproduce "high offline AUC, flat online lift", each with the diagnostic that finds it.
Their challengers are built from the champion so each one isolates a single cause.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from infra.artifacts import Artifacts
from infra.experiments import buckets, cuped, msprt_pvalues, srm_check, welch_ttest
from infra.metrics import calibration_ratio, grouped_auc, log_loss, roc_auc
from infra.monitoring import categorical_psi
from infra.registry import CHAMPION, Registry
from infra.serving.onnx import make_session
from systems.ctr.data import (
    SEEN_BY_POSITION,
    Market,
    Shift,
    sigmoid,
    true_logit_seen,
    user_activity,
    user_propensity,
)
from systems.ctr.features import model_inputs
from systems.ctr.train import MODEL_NAME

Scorer = Callable[[pd.DataFrame], np.ndarray]  # candidate frame -> P(click | seen at the top)
SCENARIO_NAMES = ("deepfm-vs-lr", "leaked-feature", "position-as-relevance", "miscalibration",
                  "offline-metric-not-kpi", "novelty")  # fmt: skip
FIRST_DAY = 14  # experiments run on the days after the training log
PRE_DAYS = 7  # pre-period (CUPED covariate): everyone sees the champion


def onnx_scorer(path: Path) -> Scorer:
    session = make_session(path, threads=1, prefer_gpu=False)

    def score(frame: pd.DataFrame) -> np.ndarray:
        # logged impressions are scored at their logged slot (offline evaluation); candidates at slot 1
        position = (
            frame["position"].to_numpy() if "position" in frame else np.ones(len(frame), dtype=np.int64)
        )
        cat, num = model_inputs(frame.assign(position=np.maximum(position, 1)))
        return session.run(None, {"cat": cat, "num": num})[0].astype(np.float64)

    return score


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass
class Policy:
    name: str
    scorer: Scorer
    auction: bool = False  # rank by P(click) x bid (revenue) instead of P(click)


def candidate_requests(
    market: Market, day: int, n_requests: int, k: int, rng: np.random.Generator, shift: Shift = Shift()
) -> pd.DataFrame:
    """n_requests x k candidate rows: user and context repeated per request, features as served."""
    cfg = market.config
    users = market.users
    active = users.index[users["join_day"].to_numpy() <= day].to_numpy()
    user = np.repeat(rng.choice(active, n_requests), k)
    ad = rng.integers(0, cfg.n_ads, n_requests * k)
    hour = np.repeat(rng.choice(24, n_requests), k)
    new = users["join_day"].to_numpy()[user] == day
    activity = user_activity(market, day)[user] + shift.activity_offset
    frame = pd.DataFrame(
        {
            "request": np.repeat(np.arange(n_requests), k),
            "user_id": user,
            "ad_id": ad,
            "site_id": np.repeat(rng.integers(0, cfg.n_sites, n_requests), k),
            "device": np.repeat(rng.choice(3, n_requests, p=[0.55, 0.35, 0.10]), k),
            "hour": hour,
            "user_segment": users["user_segment"].to_numpy()[user],
            **{
                c: market.ads[c].to_numpy()[ad]
                for c in ("advertiser_id", "ad_category", "ad_quality", "promoted", "bid")
            },
            "is_new_user": new,
            "true_activity": activity,
            "user_activity": np.where(new, np.nan, activity),
        }
    )
    frame["p_click_seen"] = sigmoid(true_logit_seen(market, frame, shift))
    return frame


def rank_positions(request: np.ndarray, key: np.ndarray) -> np.ndarray:
    """1-based rank of each row within its request by descending key (rows are grouped by request)."""
    order = np.lexsort((-key, request))
    pos = np.empty(key.size, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(request[order])) + 1]
    run = np.arange(key.size) - np.repeat(starts, np.diff(np.r_[starts, key.size]))
    pos[order] = run + 1
    return pos


def serve(policy: Policy, frame: pd.DataFrame, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """The policy's slot for every candidate (0 = not shown) and its model score."""
    score = policy.scorer(frame)
    key = score * frame["bid"].to_numpy() if policy.auction else score
    pos = rank_positions(frame["request"].to_numpy(), key)
    return np.where(pos <= slots, pos, 0), score


def click_probability(frame: pd.DataFrame, slot: np.ndarray, bonus: np.ndarray | float = 0.0) -> np.ndarray:
    """True P(click) of each candidate in its slot (0 when not shown); `bonus` adds to the logit."""
    seen = np.where(slot > 0, SEEN_BY_POSITION[np.clip(slot, 1, len(SEEN_BY_POSITION)) - 1], 0.0)
    return seen * sigmoid(logit(frame["p_click_seen"].to_numpy()) + bonus)


@dataclass
class ABResult:
    control: str
    treatment: str
    metric: str
    users: tuple[int, int]
    srm_p: float
    lift: float  # relative, CUPED-adjusted
    ci: tuple[float, float]
    p_value: float
    lift_raw: float
    ci_raw: tuple[float, float]
    variance_reduction: float  # 1 - var(CUPED effect) / var(raw effect), from the two standard errors
    true_lift: float  # expected KPI of treatment / control on the same requests, minus 1 (no novelty)
    sequential_p: list[float] = field(default_factory=list)  # mSPRT, after each day
    naive_p: list[float] = field(default_factory=list)  # fixed-horizon test read after each day
    daily_lift: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items()}


def run_ab(
    market: Market,
    control: Policy,
    treatment: Policy,
    *,
    days: int = 10,
    requests_per_day: int = 6000,
    k: int = 8,
    slots: int = 3,
    shift: Shift = Shift(),
    novelty: float = 0.0,
    metric: str = "clicks",
    seed: int = 0,
    salt: str = "ctr-ab",
) -> ABResult:
    """A user-randomised A/B; `novelty` = extra click logit in treatment on day 0, halving every day."""
    rng = np.random.default_rng([market.config.seed, seed, 99])
    n_users = market.config.n_users
    arm = buckets(np.arange(n_users), salt, 2)  # 0 control, 1 treatment
    pre = np.zeros(n_users)
    for d in range(PRE_DAYS):
        frame = candidate_requests(market, FIRST_DAY - PRE_DAYS + d, requests_per_day, k, rng, shift)
        slot, _ = serve(control, frame, slots)
        clicks = rng.random(len(frame)) < click_probability(frame, slot)
        pre += np.bincount(frame["user_id"].to_numpy(), weights=clicks, minlength=n_users)
    kpi = np.zeros(n_users)
    exposed = np.zeros(n_users, dtype=bool)
    expected = {"control": 0.0, "treatment": 0.0}
    daily_kpi, daily_lift = [], []
    for d in range(days):
        frame = candidate_requests(market, FIRST_DAY + d, requests_per_day, k, rng, shift)
        users = frame["user_id"].to_numpy()
        value = frame["bid"].to_numpy() if metric == "revenue" else 1.0
        slot_c, _ = serve(control, frame, slots)
        slot_t, _ = serve(treatment, frame, slots)
        bonus = novelty * 0.5**d
        p_c, p_t = click_probability(frame, slot_c), click_probability(frame, slot_t, bonus)
        expected["control"] += float(np.sum(p_c * value))
        # the true, lasting effect of the policy: without the novelty bonus that fades
        expected["treatment"] += float(np.sum(click_probability(frame, slot_t) * value))
        in_t = arm[users] == 1
        clicks = rng.random(len(frame)) < np.where(in_t, p_t, p_c)
        today = np.bincount(users, weights=clicks * value, minlength=n_users)
        kpi += today
        exposed[users] = True
        daily_kpi.append(kpi.copy())
        c, t = exposed & (arm == 0), exposed & (arm == 1)
        daily_lift.append(float(today[t].sum() / t.sum() / max(today[c].sum() / c.sum(), 1e-12) - 1))
    c, t = exposed & (arm == 0), exposed & (arm == 1)
    adjusted = cuped(kpi[exposed], pre[exposed])
    full = np.zeros(n_users)
    full[exposed] = adjusted
    raw = welch_ttest(kpi[c], kpi[t])
    cup = welch_ttest(full[c], full[t])
    base = kpi[c].mean()
    # daily looks: cumulative per-user KPI of the users exposed so far
    effects, variances, naive = [], [], []
    for cumulative in daily_kpi:
        r = welch_ttest(cumulative[c], cumulative[t])
        effects.append(float(r.effect))
        variances.append(float(r.se) ** 2)
        naive.append(float(r.p_value))
    tau = 0.05 * base  # mixing scale: lifts of a few percent are what we look for
    seq = msprt_pvalues(np.array(effects), np.array(variances), tau=tau, axis=0)
    return ABResult(
        control=control.name,
        treatment=treatment.name,
        metric=metric,
        users=(int(c.sum()), int(t.sum())),
        srm_p=srm_check([c.sum(), t.sum()], [0.5, 0.5])[1],
        lift=float(cup.effect / base),
        ci=(float(cup.ci_low / base), float(cup.ci_high / base)),
        p_value=float(cup.p_value),
        lift_raw=float(raw.effect / base),
        ci_raw=(float(raw.ci_low / base), float(raw.ci_high / base)),
        variance_reduction=float(1 - (cup.se / raw.se) ** 2),
        true_lift=expected["treatment"] / expected["control"] - 1,
        sequential_p=[float(x) for x in seq],
        naive_p=naive,
        daily_lift=daily_lift,
    )


# --- offline evaluation on a logged (position-biased) exploration log --------------------------------


def logged_requests(
    market: Market,
    days: range,
    n_requests: int,
    k: int = 8,
    slots: int = 3,
    shift: Shift = Shift(),
    seed: int = 1,
) -> pd.DataFrame:
    """Shown impressions under the logging policy (promoted ads pushed up), with clicks and a leak column."""
    rng = np.random.default_rng([market.config.seed, seed, 5])
    frames = []
    for d in days:
        frame = candidate_requests(market, d, n_requests, k, rng, shift)
        frame["request"] += d * n_requests
        key = rng.random(len(frame)) + 1.0 * frame["promoted"].to_numpy() * (rng.random(len(frame)) < 0.7)
        slot = rank_positions(frame["request"].to_numpy(), key)
        slot = np.where(slot <= slots, slot, 0)
        frame["position"] = slot
        frame["p_true"] = click_probability(frame, slot)
        frame["click"] = (rng.random(len(frame)) < frame["p_true"].to_numpy()).astype(np.int64)
        frames.append(frame[slot > 0])
    log = pd.concat(frames, ignore_index=True)
    # "post-click dwell seconds": written after the click, so it exists in the log but never at request time
    log["dwell_s"] = np.where(
        log["click"] == 1, rng.gamma(2.0, 10.0, len(log)) * (rng.random(len(log)) < 0.6), 0.0
    )
    return log


@dataclass
class Scenario:
    name: str
    question: str
    control: Policy
    treatment: Policy
    offline_treatment: Scorer  # how the treatment scores the offline log (may see logged-only columns)
    offline_control: Scorer | None = None  # default: the control policy's scorer
    shift: Shift = Shift()
    novelty: float = 0.0
    metric: str = "clicks"
    diagnostic: Callable[[pd.DataFrame, ABResult], tuple[str, bool]] | None = None


def build_scenarios(market: Market, champion: Scorer, incumbent: Scorer, log: pd.DataFrame) -> list[Scenario]:
    """The A/B cases. `champion`: the DeepFM scorer, base of every constructed challenger; `incumbent`: LR;
    `log`: the offline exploration log (position-biased)."""

    # position learned as relevance: a model without the position feature, fitted on the biased log,
    # credits `promoted` with the clicks the top slots earned
    def at_top(frame: pd.DataFrame) -> np.ndarray:  # the champion's debiased score: every ad at slot 1
        return champion(frame.drop(columns="position", errors="ignore"))

    x = np.stack([logit(at_top(log)), log["promoted"].to_numpy()], axis=1)
    gamma = float(LogisticRegression().fit(x, log["click"].to_numpy()).coef_[0, 1])

    def with_promoted(frame: pd.DataFrame) -> np.ndarray:
        return sigmoid(logit(at_top(frame)) + gamma * frame["promoted"].to_numpy())

    def leaky(frame: pd.DataFrame) -> np.ndarray:
        dwell = frame["dwell_s"].to_numpy() if "dwell_s" in frame else np.zeros(len(frame))
        return sigmoid(logit(champion(frame)) + 0.2 * dwell)

    def sharpened(frame: pd.DataFrame) -> np.ndarray:  # same order, overconfident probabilities
        return sigmoid(3.0 * logit(champion(frame)) + 4.5)

    propensity = user_propensity(market)

    def knows_the_user(frame: pd.DataFrame) -> np.ndarray:  # a user-level signal: same shift for all ads
        return sigmoid(logit(champion(frame)) + 0.8 * propensity[frame["user_id"].to_numpy()])

    def diag_leak(log: pd.DataFrame, _r: ABResult) -> tuple[str, bool]:
        # what the serving path has for dwell_s at request time: nothing yet (0 for every candidate)
        train_nonzero = float(np.mean(log["dwell_s"].to_numpy() > 0))
        value = categorical_psi(np.array([1 - train_nonzero, train_nonzero]), np.array([1.0, 0.0]))
        return (f"dwell_s > 0 in {train_nonzero:.1%} of training rows, 0% at serving: PSI {value:.2f} "
                f"(> 0.25: the feature does not exist at request time)", value > 0.25)  # fmt: skip

    def diag_position(log: pd.DataFrame, _r: ABResult) -> tuple[str, bool]:
        y, g = log["click"].to_numpy(), log["position"].to_numpy()
        a = grouped_auc(y, at_top(log), g)
        b = grouped_auc(y, with_promoted(log), g)
        return (
            f"AUC within position: champion {a:.4f}, challenger {b:.4f} (the gain was the slot)",
            b <= a + 0.002,
        )

    def diag_calibration(log: pd.DataFrame, _r: ABResult) -> tuple[str, bool]:
        y = log["click"].to_numpy()
        a, b = calibration_ratio(y, champion(log)), calibration_ratio(y, sharpened(log))
        flagged = abs(b - 1) > abs(a - 1) + 0.05
        return (
            f"calibration (pred/obs): champion {a:.2f}, challenger {b:.2f} (the auction prices with p)",
            flagged,
        )

    def diag_grouped(log: pd.DataFrame, _r: ABResult) -> tuple[str, bool]:
        y, g = log["click"].to_numpy(), log["request"].to_numpy()
        a, b = grouped_auc(y, champion(log), g), grouped_auc(y, knows_the_user(log), g)
        return f"AUC within request: champion {a:.4f}, challenger {b:.4f} (ranking unchanged)", abs(
            b - a
        ) < 0.002

    def diag_novelty(_log: pd.DataFrame, r: ABResult) -> tuple[str, bool]:
        early, late = np.mean(r.daily_lift[:3]), np.mean(r.daily_lift[-4:])
        return (
            f"daily lift: first 3 days {early:+.1%}, last 4 days {late:+.1%} (decays: novelty)",
            early > late + 0.03,
        )

    champ = Policy("deepfm", champion)
    return [
        Scenario("deepfm-vs-lr", "does the better offline model win online?", Policy("lr", incumbent), champ, champion),
        Scenario("leaked-feature", "offline AUC from a feature written after the click", champ,
                 Policy("deepfm+dwell", leaky), leaky, diagnostic=diag_leak),
        Scenario("position-as-relevance", "a model without position learns the slot as relevance",
                 Policy("deepfm", at_top), Policy("deepfm+promoted", with_promoted), with_promoted,
                 offline_control=at_top, diagnostic=diag_position),
        Scenario("miscalibration", "same AUC, overconfident p; the auction ranks by p x bid", Policy("deepfm", champion, auction=True),
                 Policy("deepfm-sharpened", sharpened, auction=True), sharpened, metric="revenue", diagnostic=diag_calibration),
        Scenario("offline-metric-not-kpi", "global AUC rises from a user-level signal; within-request order is unchanged",
                 champ, Policy("deepfm+user", knows_the_user), knows_the_user, shift=Shift(user_propensity=0.8),
                 diagnostic=diag_grouped),
        Scenario("novelty", "an equivalent model whose newness users click on for a few days", champ,
                 Policy("deepfm-retrained", champion), champion, novelty=0.5, diagnostic=diag_novelty),
    ]  # fmt: skip


def offline_metrics(log: pd.DataFrame, treatment: Scorer, control: Scorer) -> dict[str, float]:
    y = log["click"].to_numpy()
    pc, pt = control(log), treatment(log)
    return {
        "auc_control": roc_auc(y, pc),
        "auc_treatment": roc_auc(y, pt),
        "logloss_control": log_loss(y, pc),
        "logloss_treatment": log_loss(y, pt),
    }


def run_scenarios(market: Market, champion: Scorer, incumbent: Scorer, names: list[str] | None = None,
                  requests_per_day: int = 6000, days: int = 10) -> list[dict]:  # fmt: skip
    """Every scenario: offline AUC of both arms, the online A/B, and the diagnostic's verdict."""
    base_log = logged_requests(market, range(11, 14), 4000)
    out = []
    for sc in build_scenarios(market, champion, incumbent, base_log):
        if names and sc.name not in names:
            continue
        log = (
            base_log if sc.shift == Shift() else logged_requests(market, range(11, 14), 4000, shift=sc.shift)
        )
        offline = offline_metrics(log, sc.offline_treatment, sc.offline_control or sc.control.scorer)
        result = run_ab(market, sc.control, sc.treatment, shift=sc.shift, novelty=sc.novelty, metric=sc.metric,
                        requests_per_day=requests_per_day, days=days)  # fmt: skip
        finding, flagged = sc.diagnostic(log, result) if sc.diagnostic else ("", False)
        out.append({"scenario": sc.name, "question": sc.question, **offline, "ab": result.summary(),
                    "diagnostic": finding, "flagged": flagged})  # fmt: skip
    return out


# --- the registered models, and what a win changes ------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """A registered model version, downloaded, as a scorer."""

    kind: str
    version: str
    scorer: Scorer


def registered_scorers(art: Artifacts) -> dict[str, Registered]:
    """The DeepFM and LR versions `mlsd ctr train` registered (train_metrics.json names them), as scorers."""
    metrics = json.loads(art.require("train_metrics.json", "train").read_text())
    registry = Registry()
    out = {}
    for kind in ("deepfm", "lr"):
        version = metrics[kind]["version"]
        run_id = registry.client.get_model_version(MODEL_NAME, version).run_id
        folder = registry._mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model", dst_path=str(art.dir(f"registry/{kind}")),
            tracking_uri=registry.tracking_uri,
        )  # fmt: skip
        out[kind] = Registered(kind, version, onnx_scorer(Path(folder) / "model.onnx"))
    return out


def challenger_won(results: list[dict]) -> bool:
    """deepfm-vs-lr was run and DeepFM won it: significant under mSPRT, CI above 0, no sample-ratio mismatch."""
    main_ab = next((r for r in results if r["scenario"] == "deepfm-vs-lr"), None)
    if main_ab is None:
        return False
    ab = main_ab["ab"]
    return min(ab["sequential_p"]) < 0.05 and ab["ci"][0] > 0 and ab["srm_p"] >= 0.001


def promote(version: str) -> None:
    """Point `champion` at the DeepFM version that won (serving loads the champion)."""
    Registry().set_alias(MODEL_NAME, CHAMPION, version)
