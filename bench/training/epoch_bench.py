# SPDX-License-Identifier: Apache-2.0
"""Python baseline for bench_training_epoch: one local training epoch with PyTorch (Debian's
python3-torch, the same libtorch 1.13), the same network, data size, batch size, optimizer and
loop as the torch plugin's train() call:

  fresh SGD per call; per epoch a randperm from a seeded generator; per batch index_select,
  zero_grad, forward, loss, backward, step, loss.item(); then a copy of the state (the plugin
  returns its weights).

Prints one JSON object per workload: {"workload", "params", "seconds": [per call]}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def build(workload):
    if workload == "mlp_1m":
        layers = [torch.nn.Linear(512, 1024), torch.nn.Linear(1024, 512), torch.nn.Linear(512, 10)]
        acts = [torch.relu, torch.relu, None]
        return torch.nn.ModuleList(layers), acts, (512,), 10, "cross_entropy"
    if workload == "heart_disease":
        return torch.nn.ModuleList([torch.nn.Linear(28, 5)]), ["softmax"], (28,), 5, "nll_softmax"
    if workload == "femnist_conv":
        layers = [torch.nn.Conv2d(1, 4, 3, stride=1, padding=1), torch.nn.Flatten(),
                  torch.nn.Linear(3136, 3)]
        return torch.nn.ModuleList(layers), [torch.relu, None, "softmax"], (1, 28, 28), 3, \
            "nll_softmax"
    raise SystemExit("unknown workload " + workload)


def forward(layers, acts, x, loss_kind):
    last = len(layers) - 1
    for i, (layer, act) in enumerate(zip(layers, acts)):
        x = layer(x)
        if act is None:
            continue
        if act == "softmax":
            if i == last and loss_kind == "nll_softmax":
                continue  # the plugin applies log_softmax to the logits for NLLLoss
            x = torch.softmax(x, 1)
        else:
            x = act(x)
    return x


def train_call(layers, acts, loss_kind, x, y, batch, lr, momentum, seed):
    optimizer = torch.optim.SGD(layers.parameters(), lr=lr, momentum=momentum)
    layers.train()
    rows = x.shape[0]
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    total = 0.0
    batches = 0
    for begin in range(0, rows, batch):
        index = order[begin:begin + batch]
        xb = x.index_select(0, index)
        yb = y.index_select(0, index)
        optimizer.zero_grad()
        out = forward(layers, acts, xb, loss_kind)
        if loss_kind == "nll_softmax":
            loss = F.nll_loss(F.log_softmax(out, 1), yb)
        else:
            loss = F.cross_entropy(out, yb)
        loss.backward()
        optimizer.step()
        total += loss.item()
        batches += 1
    layers.eval()
    state = {k: v.detach().clone() for k, v in layers.state_dict().items()}
    return total / max(batches, 1), state


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    layers, acts, shape, classes, loss_kind = build(args.workload)
    x = torch.rand((args.rows,) + shape) * 2 - 1
    y = torch.randint(0, classes, (args.rows,))
    params = sum(p.numel() for p in layers.parameters())

    train_call(layers, acts, loss_kind, x, y, args.batch, args.lr, args.momentum, 0)  # warm-up
    seconds = []
    for i in range(args.repeats):
        start = time.perf_counter()
        train_call(layers, acts, loss_kind, x, y, args.batch, args.lr, args.momentum, i + 1)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"workload": args.workload, "params": params, "seconds": seconds}))


if __name__ == "__main__":
    main()
