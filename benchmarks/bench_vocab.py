"""Benchmark: the vocabulary text classifier (20,071 names x 7 templates, spec 2.2), ours vs plain.

* *ours*: :func:`s3a.embed.text_classifier`: the prompts tokenised in worker processes
  (:func:`s3a.embed.tokenize_texts`), sorted by token length, each batch run through the causal text
  tower on its own longest prompt instead of the full 77-token context;
* *baseline*: the same prompts, tokenizer (one call, one core), batches, autocast and averaging,
  encoded with open_clip's ``model.encode_text`` on the full context.

Both include tokenisation, which is also timed alone both ways (with the check that the tokens are
the same), and the agreement of the two classifiers is printed.

    python benchmarks/bench_vocab.py                                   # tiny model, CPU
    python benchmarks/bench_vocab.py --arch ViT-B-16 --batch-size 4096   # a GPU node
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from s3a.embed import image_autocast, text_classifier, tokenize_texts
from s3a.models import TINY_ARCH, ModelSpec, load_clip
from s3a.vocab import TEMPLATES, build_vocabulary, fill_templates


def plain_classifier(clip, names: list[str], templates, batch_size: int) -> np.ndarray:
    tokens = clip.tokenizer(fill_templates(names, templates))
    rows = []
    with torch.inference_mode(), image_autocast(clip.device):
        for s in range(0, len(tokens), batch_size):
            rows.append(
                F.normalize(
                    clip.model.encode_text(tokens[s : s + batch_size].to(clip.device)).float(), dim=-1
                )
            )
    emb = torch.cat(rows).view(len(names), len(templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1).cpu().numpy()


def timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default=TINY_ARCH)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--names", type=int, default=0, help="first N names only (0: the whole vocabulary)")
    args = parser.parse_args()

    clip = load_clip(ModelSpec(args.arch, None))
    names = list(build_vocabulary().name)
    names = names[: args.names] if args.names else names
    templates = TEMPLATES["imagenet7"]
    prompts = fill_templates(names, templates)
    serial, tokenize = timed(lambda: clip.tokenizer(prompts), clip.device)
    parallel, t_parallel = timed(lambda: tokenize_texts(clip.tokenizer, prompts), clip.device)
    text_classifier(clip.model, clip.tokenizer, names[:500], templates, args.batch_size)  # warm-up
    ours, t_ours = timed(
        lambda: text_classifier(clip.model, clip.tokenizer, names, templates, args.batch_size), clip.device
    )
    plain, t_plain = timed(lambda: plain_classifier(clip, names, templates, args.batch_size), clip.device)
    cosine = np.sum(ours * plain, axis=1)
    device = torch.cuda.get_device_name(clip.device) if clip.device.type == "cuda" else "cpu"
    print(
        f"device: {device}; {args.arch}; {len(names)} names x {len(templates)} templates "
        f"= {len(prompts)} prompts"
    )
    print(f"tokenisation alone, one call: {tokenize:7.2f} s")
    print(
        f"tokenisation alone, workers:  {t_parallel:7.2f} s (ratio {tokenize / t_parallel:.2f}; "
        f"the same tokens: {torch.equal(serial, parallel)})"
    )
    print(f"baseline (77-token context): {t_plain:7.2f} s")
    print(f"ours (trimmed, by length):   {t_ours:7.2f} s")
    print(f"ratio baseline / ours: {t_plain / t_ours:.2f}; cosine of the classifiers min {cosine.min():.5f}")


if __name__ == "__main__":
    main()
