"""rerec train-reward-gnn: LightGCN trained with BPR on the interaction graph; its item embeddings give
the preference alignment score (PAS) of the reward.

Input (--graphs): a folder written by 'rerec build-graphs' (its manifest is verified first). The graph
already leaves out the (user, positive) pairs of val/test queries.
Output (--out), written atomically:
  item_embeddings.pt   {"ids": list[str], "embeddings": FloatTensor[n_items, d]}   (load_embeddings)
  user_embeddings.pt   {"ids": list[str], "embeddings": FloatTensor[n_users, d]}
  metrics.json         held-out Recall@K / NDCG@K of LightGCN and of a popularity baseline, history
  manifest.json        sha256 of every output and of the graphs' manifest

Method (He et al., 2020, "LightGCN", arXiv 2002.02126): node embeddings propagated by
``x^(l+1) = D^-1/2 A D^-1/2 x^(l)`` and averaged over layers, ``x = sum_l alpha_l x^(l)``; trained with
the BPR loss ``-log sigmoid(x_u·x_i - x_u·x_j)`` over (user, interacted item i, sampled item j).
Uses :class:`torch_geometric.nn.models.LightGCN` (its embedding, layer weights ``alpha`` and BPR
``recommendation_loss``), full-graph propagation every batch (cheap at MovieLens scale) over a sparse
CSR adjacency normalised once, through :func:`propagate` (equal to ``get_embedding``; tested).

Evaluation: per user a seeded random ``valid_fraction`` of their edges is held out for early stopping
and another ``test_fraction`` for the reported figures. Items the user has in training (and, for the
test figures, in the validation part) are masked; ``recall@K = hits / |held-out items of the user|``,
``ndcg@K`` with binary gains, both averaged over users with held-out items. The popularity baseline
(items ranked by training degree) is scored with the same masks and users. The saved embeddings come
from the best-validation weights propagated over the whole (leakage-free) graph.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rerec.config import add_dataclass_arguments, dataclass_from_args
from rerec.errors import ConfigError, InputError
from rerec.graphs.interaction import InteractionGraph
from rerec.io import atomic_dir, file_sha256, write_json
from rerec.tracking import stage_run

log = logging.getLogger(__name__)

STAGE = "train-reward-gnn"
ITEM_EMBEDDINGS = "item_embeddings.pt"
USER_EMBEDDINGS = "user_embeddings.pt"


@dataclass
class LightGCNConfig:
    """Options of the train-reward-gnn stage."""

    # Model
    embedding_dim: int = field(default=64, metadata={"help": "Embedding size d of users and items."})
    num_layers: int = field(default=3, metadata={"help": "LightGCN propagation layers L (paper: 3)."})
    # Optimisation
    epochs: int = field(default=60, metadata={"help": "Maximum passes over the training edges."})
    batch_size: int = field(default=4096, metadata={"help": "BPR triples (user, positive, negative) per step."})
    lr: float = field(default=0.01, metadata={"help": "Adam learning rate."})
    lambda_reg: float = field(default=1e-4, metadata={"help": "L2 regularisation of the BPR loss."})
    # Held-out evaluation and early stopping
    valid_fraction: float = field(default=0.1, metadata={"help": "Share of each user's edges held out for "
                                                                  "early stopping (rounded down per user)."})
    test_fraction: float = field(default=0.1, metadata={"help": "Share of each user's edges held out for the "
                                                                 "reported Recall/NDCG (rounded down per user)."})
    k: int = field(default=20, metadata={"help": "Cut-off K of Recall@K and NDCG@K."})
    eval_users: int = field(default=10_000, metadata={"help": "Score validation and the reported figures on at "
                                                               "most this many users, a seeded sample, so a "
                                                               "catalog of 160k users is scored in seconds "
                                                               "rather than the budget (0: every user)."})
    eval_every: int = field(default=2, metadata={"help": "Evaluate on the validation edges every N epochs."})
    patience: int = field(default=5, metadata={"help": "Stop after this many evaluations without a better "
                                                        "validation Recall@K."})
    max_seconds: float = field(default=0.0, metadata={"help": "Stop training after this many seconds, checked "
                                                               "after every batch (an epoch of a large catalog "
                                                               "takes hours); the weights are then validated "
                                                               "once more so the best ones are kept (0: no "
                                                               "limit)."})
    seed: int = field(default=0, metadata={"help": "Seed of the held-out split, initialisation and sampling."})
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0: leave torch's default). One is "
                                                      "the default: at MovieLens scale the sparse propagation "
                                                      "gains nothing from more, and on busy cores extra "
                                                      "threads wait on each other."})

    def __post_init__(self) -> None:
        if not 0 <= self.valid_fraction < 0.5 or not 0 <= self.test_fraction < 0.5:
            raise ConfigError("valid_fraction and test_fraction must each be in [0, 0.5). "
                              f"Got {self.valid_fraction} and {self.test_fraction}. Fix: use e.g. 0.1.")
        if self.valid_fraction + self.test_fraction >= 0.8:
            raise ConfigError("valid_fraction + test_fraction leaves too little to train on. Fix: keep the sum < 0.8.")
        if self.eval_users < 0:
            raise ConfigError(f"eval_users must be >= 0 (0: every user), got {self.eval_users}. Fix: use e.g. 10000.")
        for name in ("embedding_dim", "num_layers", "batch_size", "k", "eval_every", "patience"):
            if getattr(self, name) < 1:
                default = self.__dataclass_fields__[name].default
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}. "
                                  f"Fix: set {name} to a positive integer (default {default}).")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}. "
                              f"Fix: set epochs to the number of passes, e.g. the default "
                              f"{self.__dataclass_fields__['epochs'].default}.")


# ---------------------------------------------------------------------------- pure pieces
def split_holdout(edge_user: Tensor, num_users: int, fractions: tuple[float, ...], seed: int) -> Tensor:
    """Assign each interaction edge to a part: 0 = train, 1.. = held-out parts, per user.

    For a user with ``n`` edges, part ``p`` gets ``floor(fractions[p-1] * n)`` of them, chosen by a
    seeded random order. Returns ``(E,)`` long part labels.
    """
    gen = np.random.default_rng(seed)
    user = edge_user.numpy()
    order = np.lexsort((gen.random(len(user)), user))  # random order within each user
    degree = np.bincount(user, minlength=num_users)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]])
    rank = np.empty(len(user), dtype=np.int64)
    rank[order] = np.arange(len(user)) - start[user[order]]
    part = np.zeros(len(user), dtype=np.int64)
    lower = np.zeros(len(user), dtype=np.int64)
    for p, frac in enumerate(fractions, start=1):
        upper = lower + np.floor(frac * degree[user]).astype(np.int64)
        part[(rank >= lower) & (rank < upper)] = p
        lower = upper
    return torch.from_numpy(part)


def ranking_metrics(scores: Tensor, known: Tensor, heldout: Tensor, k: int) -> dict[str, float]:
    """Recall@K and NDCG@K of one block of users.

    Args:
        scores: ``(B, I)`` item scores of B users.
        known: ``(B, I)`` bool, items to exclude from the ranking (training interactions).
        heldout: ``(B, I)`` bool, the relevant held-out items; users without any are skipped.
    Returns sums over the counted users (``recall``, ``ndcg``) and their number ``users``.
    """
    n_rel = heldout.sum(1)
    rows = n_rel > 0
    scores, known, heldout, n_rel = scores[rows], known[rows], heldout[rows], n_rel[rows]
    k = min(k, scores.size(1))
    top = scores.masked_fill(known, float("-inf")).topk(k, dim=1).indices
    hits = heldout.gather(1, top).float()
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float))
    dcg = (hits * discount).sum(1)
    ideal = torch.cumsum(discount, 0)[(n_rel.clamp(max=k) - 1)]
    return {"recall": float((hits.sum(1) / n_rel).sum()), "ndcg": float((dcg / ideal).sum()),
            "users": int(rows.sum())}


def evaluate_scores(score_fn, num_users: int, num_items: int, known_edges: tuple[Tensor, Tensor],
                    heldout_edges: tuple[Tensor, Tensor], k: int, block: int = 1024) -> dict[str, float]:
    """Mean Recall@K / NDCG@K over users with held-out edges; ``score_fn(users) -> (B, I)`` scores.

    ``known_edges`` and ``heldout_edges`` are (user index, item index) pairs of tensors.
    """
    totals = {"recall": 0.0, "ndcg": 0.0, "users": 0}
    eval_users = torch.unique(heldout_edges[0])
    for lo in range(0, len(eval_users), block):
        users = eval_users[lo: lo + block]
        slot = torch.full((num_users,), -1, dtype=torch.long)
        slot[users] = torch.arange(len(users))
        masks = []
        for eu, ei in (known_edges, heldout_edges):
            m = torch.zeros(len(users), num_items, dtype=torch.bool)
            sel = slot[eu] >= 0
            m[slot[eu[sel]], ei[sel]] = True
            masks.append(m)
        part = ranking_metrics(score_fn(users), masks[0], masks[1], k)
        for key in totals:
            totals[key] += part[key]
    n = max(totals["users"], 1)
    return {f"recall_at_{k}": totals["recall"] / n, f"ndcg_at_{k}": totals["ndcg"] / n,
            "users": totals["users"]}


def users_to_score(edges: dict[str, Edges], num_users: int, max_users: int, seed: int) -> dict[str, Edges]:
    """``edges`` restricted to at most ``max_users`` of the users with held-out edges (a seeded sample;
    every one of them when ``max_users`` is 0 or not fewer than they are), for scoring Recall/NDCG."""
    heldout = torch.unique(torch.cat([edges["valid"][0], edges["test"][0]]))
    if not max_users or len(heldout) <= max_users:
        return edges
    gen = torch.Generator().manual_seed(seed)
    keep = torch.zeros(num_users, dtype=torch.bool)
    keep[heldout[torch.randperm(len(heldout), generator=gen)[:max_users]]] = True
    return {name: (u[keep[u]], i[keep[u]]) for name, (u, i) in edges.items()}


def normalized_adjacency(edge_user: Tensor, edge_item: Tensor, num_users: int, num_items: int) -> Tensor:
    """``D^-1/2 A D^-1/2`` of the symmetric bipartite graph as a sparse CSR ``(N, N)`` tensor."""
    graph = InteractionGraph(user_ids=[""] * num_users, item_ids=[""] * num_items,
                             edge_user=edge_user, edge_item=edge_item)
    rowptr, col = graph.csr
    degree = rowptr.diff().float()
    inv_sqrt = degree.pow(-0.5).masked_fill(degree == 0, 0.0)
    row = torch.repeat_interleave(torch.arange(graph.num_nodes), rowptr.diff())
    values = inv_sqrt[row] * inv_sqrt[col]
    with warnings.catch_warnings():  # "sparse CSR support is in beta": it is what torch.sparse.mm runs on
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rowptr, col, values, (graph.num_nodes, graph.num_nodes))


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``; the backward is ``A @ grad`` too, which avoids the
    transpose that makes torch's sparse backward several times slower than its forward."""

    @staticmethod
    def forward(ctx, x: Tensor, adjacency: Tensor) -> Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return torch.sparse.mm(ctx.adjacency, grad), None


def propagate(model, adjacency: Tensor) -> Tensor:
    """``sum_l alpha_l A^l x``: what ``model.get_embedding`` computes for a pre-normalised symmetric
    ``adjacency`` (``normalize=False``), with a cheaper backward. ``(N, d)``."""
    x = model.embedding.weight
    out = x * model.alpha[0]
    for layer in range(len(model.convs)):
        x = _SymmetricSpMM.apply(x, adjacency)
        out = out + x * model.alpha[layer + 1]
    return out


def sample_negatives(users: Tensor, num_items: int, positive_keys: Tensor, gen: torch.Generator,
                     tries: int = 3) -> Tensor:
    """Uniform item indices per user, resampled (up to ``tries`` times) where they hit a training
    positive. ``positive_keys``: sorted ``user * num_items + item`` of training edges."""
    neg = torch.randint(num_items, users.shape, generator=gen)
    for _ in range(tries):
        keys = users * num_items + neg
        at = torch.searchsorted(positive_keys, keys).clamp(max=positive_keys.numel() - 1)
        bad = positive_keys[at] == keys
        if not bad.any():
            break
        neg[bad] = torch.randint(num_items, (int(bad.sum()),), generator=gen)
    return neg


# ---------------------------------------------------------------------------- I/O
def save_embeddings(path: Path, ids: list[str], embeddings: Tensor) -> None:
    """Write ``{"ids": list[str], "embeddings": FloatTensor[n, d]}``, the format :func:`load_embeddings` reads."""
    torch.save({"ids": list(ids), "embeddings": embeddings.detach().float().contiguous()}, path)


def load_embeddings(path: str | Path) -> tuple[list[str], Tensor]:
    """``(ids, embeddings (n, d))`` from ``item_embeddings.pt``/``user_embeddings.pt`` (or their folder,
    which means the item embeddings). The one reader of these files: the reward's PAS table
    (:meth:`rerec.reward.alignment.ItemEmbeddingTable.load`) and the LightGCN baseline read through it."""
    path = Path(path)
    if path.is_dir():
        path = path / ITEM_EMBEDDINGS
    if not path.is_file():
        raise InputError("embeddings file not found: the output of 'rerec train-reward-gnn' is missing here",
                         file=str(path), fix="point to a folder written by 'rerec train-reward-gnn'")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise InputError(f"cannot read embeddings ({exc})", file=str(path),
                         fix="rerun 'rerec train-reward-gnn'") from None
    if not isinstance(state, dict) or "ids" not in state or "embeddings" not in state:
        raise InputError("not a LightGCN embedding file (expected keys 'ids' and 'embeddings')", file=str(path),
                         fix="rerun 'rerec train-reward-gnn'")
    ids, embeddings = [str(i) for i in state["ids"]], state["embeddings"]
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2 or embeddings.size(0) != len(ids):
        raise InputError("embeddings do not match their ids", file=str(path), fix="rerun 'rerec train-reward-gnn'")
    return ids, embeddings.float()


def _training_curve(history: list[dict], k: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax_loss = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["loss"] for h in history], color="tab:blue", label="BPR loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("BPR loss", color="tab:blue")
    evals = [h for h in history if f"valid_recall_at_{k}" in h]
    ax_rec = ax_loss.twinx()
    ax_rec.plot([h["epoch"] for h in evals], [h[f"valid_recall_at_{k}"] for h in evals], "o-",
                color="tab:orange", label=f"valid Recall@{k}")
    ax_rec.set_ylabel(f"valid Recall@{k}", color="tab:orange")
    ax_loss.set_title("LightGCN reward GNN training")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- stage
Edges = tuple[Tensor, Tensor]  # (user index, item index) of each edge


def train_reward_gnn(graphs_dir: str | Path, out_dir: str | Path, config: LightGCNConfig | None = None) -> dict:
    """Train LightGCN on ``graphs_dir``'s interaction graph; write embeddings and metrics to ``out_dir``.

    Hold out a share of each user's edges for early stopping and for the reported figures, train with BPR
    until validation Recall@K stops improving, score the best weights and popularity on the held-out edges,
    and save the embeddings of those weights propagated over the whole graph."""
    config = config or LightGCNConfig()
    graphs_dir, out_dir = Path(graphs_dir), Path(out_dir)
    if config.threads:
        torch.set_num_threads(config.threads)
    graph = load_interaction_graph(graphs_dir)

    with stage_run(STAGE, config) as tracker:
        started = time.perf_counter()
        edges = hold_out_edges(graph, config, graphs_dir)
        adjacency = normalized_adjacency(*edges["train"], graph.num_users, graph.num_items)
        deadline = started + config.max_seconds if config.max_seconds else None
        scored = users_to_score(edges, graph.num_users, config.eval_users, config.seed)
        model, fit = fit_lightgcn(graph, edges, adjacency, config, tracker, deadline, scored)
        train_seconds = time.perf_counter() - started
        metrics = held_out_metrics(model, graph, edges, adjacency, config.k, scored)
        metrics.update(best_valid_recall_at_k=fit["best_recall"], best_epoch=fit["best_epoch"],
                       epochs_run=len(fit["history"]), stopped=fit["stopped"], train_seconds=round(train_seconds, 2),
                       counts={"users": graph.num_users, "items": graph.num_items,
                               "train_edges": len(edges["train"][0]), "valid_edges": len(edges["valid"][0]),
                               "test_edges": len(edges["test"][0])},
                       k=config.k, history=fit["history"])
        with torch.no_grad():
            embeddings = propagate(model, normalized_adjacency(graph.edge_user, graph.edge_item, graph.num_users,
                                                               graph.num_items))
        write_reward_outputs(out_dir, graph, embeddings, metrics, config, graphs_dir)
        log_summary(tracker, metrics, train_seconds)
    return metrics


def load_interaction_graph(graphs_dir: Path) -> InteractionGraph:
    """The build-graphs output (its manifest verified first); refused when it has no edges."""
    from rerec.graphs.build import verify_manifest

    verify_manifest(graphs_dir)
    graph = InteractionGraph.load(graphs_dir)
    if graph.num_interactions == 0:
        raise InputError("the interaction graph has no edges", file=str(graphs_dir),
                         fix="check interactions.parquet and the excluded val/test pairs")
    return graph


def hold_out_edges(graph: InteractionGraph, config: LightGCNConfig, graphs_dir: Path) -> dict[str, Edges]:
    """The edges by part, ``train``, ``valid`` and ``test``, split per user (:func:`split_holdout`);
    refused when no user has enough edges to hold any out for validation."""
    part = split_holdout(graph.edge_user, graph.num_users, (config.valid_fraction, config.test_fraction), config.seed)
    edges = {name: (graph.edge_user[part == p], graph.edge_item[part == p])
             for p, name in enumerate(("train", "valid", "test"))}
    if len(edges["valid"][0]) == 0:
        raise InputError("no user has enough interactions to hold any out for validation",
                         file=str(graphs_dir), fix="raise --valid-fraction or use a denser graph")
    return edges


def fit_lightgcn(graph: InteractionGraph, edges: dict[str, Edges], adjacency: Tensor, config: LightGCNConfig,
                 tracker, deadline: float | None = None, scored: dict[str, Edges] | None = None):
    """BPR training on the train edges with early stopping on validation Recall@K (every ``eval_every``
    epochs, ``patience`` evaluations without a gain), or until ``deadline`` (a ``time.perf_counter`` value).
    Validation scores the users of ``scored`` (:func:`users_to_score`; all of ``edges`` when None).

    Returns the model holding its best-validation weights (in eval mode) and ``{"history", "best_recall",
    "best_epoch", "stopped"}``; each epoch's loss (and validation figures) is logged to ``tracker``."""
    from torch_geometric.nn.models import LightGCN
    from tqdm.auto import tqdm

    n_users, n_items, k = graph.num_users, graph.num_items, config.k
    scored = scored or edges
    train_u, train_i = edges["train"]
    positive_keys = torch.sort(train_u * n_items + train_i).values
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    # The adjacency is normalised once (normalized_adjacency), so LGConv must not normalise it again.
    model = LightGCN(n_users + n_items, config.embedding_dim, config.num_layers, normalize=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def validate() -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            emb = propagate(model, adjacency)
        model.train()
        return evaluate_scores(lambda users: emb[users] @ emb[n_users:].T, n_users, n_items, scored["train"],
                               scored["valid"], k)

    history: list[dict] = []
    best = {"recall": -1.0, "epoch": 0, "state": copy.deepcopy(model.state_dict())}
    evals_without_gain, stopped = 0, "max_epochs"
    n_train = len(train_u)
    out_of_time = False
    bar = tqdm(range(1, config.epochs + 1), desc="LightGCN", unit="epoch")
    for epoch in bar:
        perm = torch.randperm(n_train, generator=gen)
        total, seen = 0.0, 0
        for lo in range(0, n_train, config.batch_size):
            if deadline is not None and lo and time.perf_counter() > deadline:
                out_of_time = True  # within an epoch: a large catalog's epoch outlasts any budget
                break
            idx = perm[lo: lo + config.batch_size]
            u, i = train_u[idx], train_i[idx]
            j = sample_negatives(u, n_items, positive_keys, gen)
            emb = propagate(model, adjacency)
            pos = (emb[u] * emb[n_users + i]).sum(-1)
            neg = (emb[u] * emb[n_users + j]).sum(-1)
            nodes = torch.cat([u, n_users + i, n_users + j]).unique()
            loss = model.recommendation_loss(pos, neg, node_id=nodes, lambda_reg=config.lambda_reg)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        record: dict = {"epoch": epoch, "loss": total / max(seen, 1)}
        if out_of_time:
            record["fraction_of_epoch"] = round(seen / n_train, 4)
        if epoch % config.eval_every == 0 or epoch == config.epochs or out_of_time or (
                deadline is not None and time.perf_counter() > deadline):
            valid = validate()
            record.update({f"valid_recall_at_{k}": valid[f"recall_at_{k}"],
                           f"valid_ndcg_at_{k}": valid[f"ndcg_at_{k}"]})
            if valid[f"recall_at_{k}"] > best["recall"]:
                best = {"recall": valid[f"recall_at_{k}"], "epoch": epoch, "state": copy.deepcopy(model.state_dict())}
                evals_without_gain = 0
            else:
                evals_without_gain += 1
            bar.set_postfix(loss=f"{record['loss']:.4f}", recall=f"{valid[f'recall_at_{k}']:.4f}")
        history.append(record)
        tracker.log_metrics({key: v for key, v in record.items() if key != "epoch"}, step=epoch)
        if evals_without_gain >= config.patience:
            stopped = "early_stopping"
            break
        if out_of_time or (deadline is not None and time.perf_counter() > deadline):
            stopped = "max_seconds"  # the weights of this epoch were validated above
            break
    bar.close()
    model.load_state_dict(best["state"])
    model.eval()
    return model, {"history": history, "best_recall": best["recall"], "best_epoch": best["epoch"], "stopped": stopped}


def held_out_metrics(model, graph: InteractionGraph, edges: dict[str, Edges], adjacency: Tensor, k: int,
                     scored: dict[str, Edges] | None = None) -> dict:
    """Recall@K / NDCG@K of the model (propagated over the train ``adjacency``) and of popularity on the test
    edges, with train and validation edges masked; on the validation edges when no test edge was held out.
    The users of ``scored`` (:func:`users_to_score`) are scored; popularity counts every train edge."""
    n_users, n_items = graph.num_users, graph.num_items
    popularity_score = torch.bincount(edges["train"][1], minlength=n_items).float()
    edges = scored or edges
    if len(edges["test"][0]):
        target, evaluated_on = edges["test"], "test"
        known = (torch.cat([edges["train"][0], edges["valid"][0]]), torch.cat([edges["train"][1], edges["valid"][1]]))
    else:
        target, evaluated_on, known = edges["valid"], "valid", edges["train"]
    with torch.no_grad():
        emb = propagate(model, adjacency)
        lightgcn = evaluate_scores(lambda users: emb[users] @ emb[n_users:].T, n_users, n_items, known, target, k)
        popularity = evaluate_scores(lambda users: popularity_score.expand(len(users), -1),
                                     n_users, n_items, known, target, k)
    return {
        "lightgcn": {key: v for key, v in lightgcn.items() if key != "users"},
        "popularity": {key: v for key, v in popularity.items() if key != "users"},
        "evaluated_on": evaluated_on,
        "eval_users": lightgcn["users"],
        "beats_popularity": lightgcn[f"recall_at_{k}"] > popularity[f"recall_at_{k}"],
    }


def write_reward_outputs(out_dir: Path, graph: InteractionGraph, embeddings: Tensor, metrics: dict,
                         config: LightGCNConfig, graphs_dir: Path) -> None:
    """The stage's folder, atomically: user and item rows of ``embeddings`` ``(n_users + n_items, d)``,
    ``metrics.json`` and a manifest with the sha256 of each output and of the graphs' manifest."""
    with atomic_dir(out_dir) as tmp:
        save_embeddings(tmp / ITEM_EMBEDDINGS, graph.item_ids, embeddings[graph.num_users:])
        save_embeddings(tmp / USER_EMBEDDINGS, graph.user_ids, embeddings[:graph.num_users])
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "manifest.json", {
            "stage": STAGE,
            "config": asdict(config),
            "graphs_manifest_sha256": file_sha256(graphs_dir / "manifest.json"),
            "outputs": {name: file_sha256(tmp / name) for name in (ITEM_EMBEDDINGS, USER_EMBEDDINGS, "metrics.json")},
            "embedding_dim": config.embedding_dim,
        })


def log_summary(tracker, metrics: dict, train_seconds: float) -> None:
    """The held-out figures and the training curve to the stage run; one log line."""
    k = metrics["k"]
    summary = {f"test_{key}": v for key, v in metrics["lightgcn"].items()}
    summary.update({f"popularity_{key}": v for key, v in metrics["popularity"].items()})
    summary.update({"best_epoch": metrics["best_epoch"], "train_seconds": train_seconds})
    tracker.log_metrics(summary)
    if tracker.enabled:
        import matplotlib.pyplot as plt

        fig = _training_curve(metrics["history"], k)
        tracker.log_figure(fig, "plots/training_curve.png")
        plt.close(fig)
    lightgcn, popularity = metrics["lightgcn"], metrics["popularity"]
    log.info("LightGCN %s Recall@%d %.4f NDCG@%d %.4f | popularity Recall@%d %.4f NDCG@%d %.4f",
             metrics["evaluated_on"], k, lightgcn[f"recall_at_{k}"], k, lightgcn[f"ndcg_at_{k}"],
             k, popularity[f"recall_at_{k}"], k, popularity[f"ndcg_at_{k}"])


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graphs", required=True, type=Path, help="folder written by 'rerec build-graphs'")
    parser.add_argument("--out", required=True, type=Path, help="output folder for embeddings and metrics")
    add_dataclass_arguments(parser, LightGCNConfig)


def cli_main(args: argparse.Namespace) -> int:
    metrics = train_reward_gnn(args.graphs, args.out, dataclass_from_args(LightGCNConfig, args))
    k = metrics["k"]
    for name in ("lightgcn", "popularity"):
        m = metrics[name]
        print(f"{name:<10} {metrics['evaluated_on']} Recall@{k} {m[f'recall_at_{k}']:.4f}  "
              f"NDCG@{k} {m[f'ndcg_at_{k}']:.4f}")
    verdict = "beats" if metrics["beats_popularity"] else "does NOT beat"
    print(f"LightGCN {verdict} popularity (best epoch {metrics['best_epoch']}, {metrics['train_seconds']:.0f} s); "
          f"written to {args.out}")
    return 0


