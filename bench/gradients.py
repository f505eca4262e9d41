"""gradient_flow on CPU: K=200, 256 targets, a 2-layer × 256-unit LSTM char model (goal ≤ 5 s).

    nice python bench/gradients.py
    nice python bench/gradients.py --batch-size 64 --hidden 128

The model is untrained (timing does not depend on the weights): embedding 64 → nn.LSTM(64, 256, 2) → linear,
vocabulary 96, on a random 4,096-token stream. The ratio compares the batched pass (one backward per batch of
targets) with one backward per target, timed on a few targets and scaled to the same count.

Threads default to 1: on a 2-core machine that other work shares, torch's two intra-op threads wait on each
other whenever one is descheduled, and the same run measured 30+ s instead of about 4 s. Pass --threads 0 for
torch's default on an idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from lstmviz.analysis.gradients import gradient_flow


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.decoder = nn.Linear(hidden, vocab)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=200)
    p.add_argument("--targets", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--single", type=int, default=4, help="targets timed one backward each, for the ratio")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CharLSTM(96, 64, args.hidden, args.layers)
    ids = torch.randint(0, 96, (args.tokens,))
    gradient_flow(model, ids, K=8, n_targets=4)  # warm the allocator and oneDNN
    t0, cpu0 = time.perf_counter(), time.process_time()
    flow = gradient_flow(model, ids, K=args.K, n_targets=args.targets, batch_size=args.batch_size)
    batched, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    t0 = time.perf_counter()
    gradient_flow(model, ids, K=args.K, targets=flow.targets[: args.single], batch_size=1)
    single = (time.perf_counter() - t0) * len(flow.targets) / args.single
    h0 = flow.summary.query("series == 'h l0'").set_index("k")["mean"]
    print(f"speedup_vs_one_backward_per_target: {single / batched:.1f}")
    print(f"gradient_flow_s: {batched:.2f}")
    print(f"gradient_flow_cpu_s: {cpu:.2f}")
    print("goal_s: 5")
    print(f"one_backward_per_target_s_scaled: {single:.2f}")
    print(f"targets: {len(flow.targets)}")
    print(f"K: {args.K}")
    print(f"model: LSTM {args.layers}x{args.hidden}")
    print(f"batch_size: {args.batch_size}")
    print(f"threads: {torch.get_num_threads()}")
    print(f"mean_grad_h_l0_k50_over_k0: {h0.loc[min(50, args.K)] / h0.loc[0]:.3g}")


if __name__ == "__main__":
    main()
