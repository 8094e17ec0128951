"""``hub/<name>/README.md``: one checkpoint's card on the Hugging Face Hub."""
from __future__ import annotations

from pathlib import Path

from .. import research as leaderboard

from .card_sections import against_controls, arms_of, picked_arms, verdict_lines
from ..models._timm import REGISTERED as TIMM_REGISTERED
from .card_sources import CITATION_BIBTEX, GITHUB_REPO, DATA_NOTES, arm_options_of, baseline_of, entry_top1, fmt, hardware_of, recipe_of_entry, runs_phrase, saved_knob, seeds_phrase

__all__ = ["render_hub_readme"]


def render_hub_readme(name: str, entry: dict, info: dict, results_dir: Path,
                      costs: dict | None = None) -> str:
    """A checkpoint's Hugging Face model card (``hub/<name>/README.md``): front matter, how to load it, its metrics,
    which seed it is, and how it compares with its baselines.

    Args:
        name: the checkpoint, ``<architecture>.<tag>``.
        entry: ``info[name]``.
        info: `collect`'s record of every hub folder (the baselines are read from it).
        results_dir: the leaderboard's results files.
        costs: what ConvTwist costs against each control (`OnnxBench.costs`); None reads ``bench/results/onnx.json``.

    Returns:
        The card's markdown.

    Example:
        >>> info = collect(Path("hub"))  # doctest: +SKIP
        >>> card = render_hub_readme("xresnet18.imagewoof", info["xresnet18.imagewoof"], info)  # doctest: +SKIP
    """
    config, ev = entry["config"], entry["eval"] or {}
    dataset = config["dataset"]
    arch = config["architecture"]
    s128 = (ev.get("sizes") or {}).get("128", {})
    base = baseline_of(name)
    results = []
    if s128:
        results = ["    results:", "      - task: {type: image-classification}",
                   f"        dataset: {{name: {dataset} (160px, 10 classes), type: {dataset}}}",
                   "        metrics:",
                   f"          - {{type: accuracy, name: top-1 @128px, value: {s128['top1']:.2f}}}",
                   f"          - {{type: accuracy, name: top-5 @128px, value: {s128['top5']:.2f}}}"]
    front = ["---", "library_name: pytorch", "license: mit", "pipeline_tag: image-classification",
             "tags: [image-classification, convtwist, resnet, convtwist-zoo]", f"datasets: [{dataset}]",
             "model-index:", f"  - name: {name}"] + results + ["---", ""]
    options = f" ({arm})" if (arm := arm_options_of(config)) else ""
    kind = ("every 3x3 convolution of its residual blocks a ConvTwist, the stem plain" if arch.startswith("convtwist")
            else "plain convolutions: the baseline")
    tag = name.split(".", 1)[1]
    params, macs = ev.get("params"), s128.get("macs")
    recipe = config["recipe"]
    body = [f"# Model card for {name}", "",
            f"{arch}{options} trained from scratch on {dataset} at 128px with convtwist-zoo ({kind}). ConvTwist adds to "
            "a 3x3 convolution two antisymmetric kernels weighted by coordinate grids with learnable centres, so a "
            "layer can express rotation and scaling.", "",
            "## Model details", "",
            "- **Model type:** image classification / feature backbone",
            f"- **Architecture:** {arch}{options}",
            f"- **Params (M):** {fmt((params or 0) / 1e6, '{:.1f}')}",
            f"- **GMACs:** {fmt((macs or 0) / 1e9, '{:.2f}')} at 128 x 128",
            "- **Image size:** 128 x 128 (evaluation: resize to 146, centre crop 128, ImageNet mean/std)",
            f"- **Dataset:** {dataset}, 10 classes: {DATA_NOTES.get(dataset, dataset)}",
            f"- **Training:** {len(entry['metrics'])} epochs, "
            f"{'Ranger' if recipe_of_entry(entry)['lookahead'] else 'RAdam'} flat-cos, peak lr "
            f"{float(recipe['lr']):g}, {'bf16 autocast' if saved_knob(recipe, 'amp') else 'fp32'}, on "
            f"{hardware_of(entry)}",
            "- **Paper:** A Novel Convolutional Neural Network Architecture with a Continuous Symmetry, "
            "https://arxiv.org/abs/2308.01621",
            f"- **Code:** https://github.com/{GITHUB_REPO}", "",
            "## Model usage", "",
            "### Image classification", "", "```python", "import convtwist_zoo", "from PIL import Image", "",
            f'model = convtwist_zoo.create_model("{name}").eval()   # checks the weights\' sha256',
            f'transform = convtwist_zoo.get_transform("{name}")     # the transform the card was measured with',
            'x = transform(Image.open("photo.jpg").convert("RGB")).unsqueeze(0)',
            "top5 = model(x).softmax(-1).topk(5)",
            'labels = model.pretrained_cfg["label_names"]', "```", ""]
    if name.split(".")[0] in TIMM_REGISTERED:
        body += [f'Through timm, after `import convtwist_zoo`: `timm.create_model("{name}", pretrained=True)`, with '
                 "`timm.data.resolve_data_config({}, model=model)` for its transform.", ""]
    body += ["### Feature map extraction", "", "```python",
             f'features = convtwist_zoo.create_model("{name}", features_only=True).eval()',
             "for fmap in features(x):   # strides 4, 8, 16 and 32",
             "    print(fmap.shape)", "```", "",
             "### Image embeddings", "", "```python",
             f'backbone = convtwist_zoo.create_model("{name}", num_classes=0).eval()',
             "embedding = backbone(x)   # (1, num_features): pooled, before the classifier",
             "# or: model.forward_head(model.forward_features(x), pre_logits=True)", "```", "",
             "### Fine-tuning", "", "```python",
             f'model = convtwist_zoo.create_model("{name}", num_classes=37)   # a new head for 37 classes',
             "```", "", "```bash",
             f"convtwist-zoo finetune --model {arch} --pretrained {tag} --data MYFOLDER --out runs/mine",
             "```", "", "### torch.hub", "", "```python",
             f'model = torch.hub.load("{GITHUB_REPO}", "{arch}", pretrained="{tag}")', "```", "",
             "## Model comparison", "",
             "| metric | value |", "|---|---|",
             f"| top-1 @128px | {fmt(s128.get('top1'))} |", f"| top-5 @128px | {fmt(s128.get('top5'))} |",
             f"| top-1 @160px | {fmt(entry_top1(entry, '160'))} |"]
    picked = picked_arms(name, info, results_dir)  # the results file, read once for the card
    arms = arms_of(picked)
    if base and arms:
        base_top1 = arms[2]
        body += [f"| baseline {base.split('.')[0]} top-1 @128px, same protocol | "
                 f"{f'{leaderboard.mean_std(base_top1)} ({seeds_phrase(len(base_top1))})' if base_top1 else '–'} |"]
    elif base:
        body += [f"| baseline {base} top-1 @128px | {fmt(entry_top1(info.get(base)))} |"]
    if lb := config.get("leaderboard"):
        source = f"`results/leaderboard/{lb['results']}`"
        # one run count, the arm's as its rows stand now (the pick's own statistics are frozen in its config.json and grow
        # stale as seeds finish)
        pick = (f"These weights are seed {lb['seed']} of the fast.ai leaderboard protocol ({source}), picked as the "
                "finished run closest to its arm's mean top-1")
        if passed := lb.get("closer_without_weights"):
            pick += f" among those whose weights were at hand ({runs_phrase(passed)} nearer the mean had lost theirs)"
        pick += "."
        now = arms[1] if arms else []
        if len(now) > 1:
            pick += (f" Its arm has {len(now)} finished runs: {leaderboard.mean_std(now)}, min {min(now):.2f}, max "
                     f"{max(now):.2f}.")
            if (own := arms[3]) is not None:
                # a pick made from few seeds may now sit at an end of its arm: say where, so no one reads it as typical
                rank = sorted(now, reverse=True).index(own) + 1
                where = ("the arm's highest" if rank == 1 else "the arm's lowest" if rank == len(now) else
                         f"{rank} of {len(now)} from the top")
                pick += f" Seed {lb['seed']} scored {own:.2f}, {where}."
        else:
            pick += " It is its arm's only finished run so far: no spread over seeds yet."
        if not saved_knob(config["recipe"], "amp"):
            pick += (" That arm ran the recipe in fp32, without its bf16 autocast, and is compared only with fp32 "
                     "arms" + (f": its baseline is {base.split('.')[0]}'s fp32 arm." if base else "."))
        body += ["", pick]
        body += ["", "The table evaluates these weights as published (stored in fp16); the leaderboard's top-1 "
                 "figures are of the runs' fp32 weights."]
    else:
        body += ["", f"One training run (seed {config['recipe'].get('seed', 0)}), recipe: {len(entry['metrics'])} "
                 f"epochs, {'Ranger' if recipe_of_entry(entry)['lookahead'] else 'RAdam'} flat-cos (MODEL_CARDS.md)."]
    if verdict := verdict_lines(name, info, replicates="the replicates in the repository's docs/recipe-history.md",
                           arms=arms):
        body += ["", f"Against its plain baseline: {verdict}"]
    for line in against_controls(picked, costs or {}):
        body += ["", line]
    body += ["", f"Classes: {', '.join(config['class_names'])}.", "",
             "Limitations: ten classes at 128px from about 9,000 training images; research weights, not ImageNet-1k "
             "models. MODEL_CARDS.md in the repository has the recipe, robustness sweeps and more.", "",
             "## Citation", "", "```bibtex", CITATION_BIBTEX, "```", ""]
    return "\n".join(front + body)
