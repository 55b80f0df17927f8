"""`vifi eval`: one checkpoint on one list, or a whole protocol (`--protocol`) with its aggregated table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vifi.cli.options import (Backend, Protocol, backend_option, batch_option, cache_dir_option, device_option,
                              frames_option, workers_option)
from vifi.inference_flags import check_backend, parse_views


def eval_command(
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint",
                                             help="vifi checkpoint (.safetensors), prompt artifact or run folder; "
                                                  "with --protocol base2novel/fewshot: comma-separated, one per seed/K"),
    data: Optional[str] = typer.Option(None, "--data", help="annotation list: relative/path label"),
    labels: Optional[str] = typer.Option(None, "--labels", help="label CSV (id,name)"),
    root: Optional[str] = typer.Option(None, "--root", help="video root"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder for results and predictions"),
    frames: Optional[int] = frames_option(),
    views: Optional[str] = typer.Option(None, "--views", help="CLIPSxCROPS: 1x1 (default), 4x3 (supervised default)"),
    batch: int = batch_option(),
    workers: int = workers_option(),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                            help="torch.compile the scoring (default: on CUDA)"),
    device: Optional[str] = device_option(),
    vanilla: bool = typer.Option(False, "--vanilla", help="bare class names, no prompt template"),
    reference_multiclip: bool = typer.Option(False, "--reference-multiclip",
                                             help="draw k>1 clips with the training formula (reference behaviour)"),
    protocol: Optional[Protocol] = typer.Option(None, "--protocol", help="run a whole protocol into one table"),
    suite: Optional[Path] = typer.Option(None, "--suite", help="protocol suite YAML (several datasets)"),
    splits: Optional[str] = typer.Option(None, "--splits", help="folder from `vifi splits make` (one dataset)"),
    dataset: str = typer.Option("custom", "--dataset", help="name of the one dataset given by flags"),
    seeds: str = typer.Option("1,2,3", "--seeds", help="base2novel seeds"),
    shots: str = typer.Option("2,4,8,16", "--shots", help="fewshot K values"),
    train: bool = typer.Option(False, "--fine-tune", "--train", help="fine-tune each seed/K here first (resumable "
                                                                      "chain; --train is the old spelling)"),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="recipe of those fine-tunes (default b2n / fewshot)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override for those fine-tunes (repeatable)"),
    partial: bool = typer.Option(False, "--partial", help="run a suite that lacks some of the paper's datasets"),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights (local file, open_clip tag such as "
                                                            "openai, or hf-hub:ORG/NAME): plain CLIP without "
                                                            "--checkpoint, or the token table a paper .pth lacks"),
    arch: str = typer.Option("ViT-B-16", "--arch",
                             help="open_clip architecture of --clip (e.g. ViT-B-16, ViT-L-14), or hf-hub:ORG/NAME"),
    backend: Backend = backend_option(),
    skip_undecodable: bool = typer.Option(False, "--skip-undecodable",
                                          help="score only the videos that decode (they are listed in failed.txt)"),
    as_json: bool = typer.Option(False, "--json", help="print only results.json on stdout (tables go to stderr)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="evaluate only N videos, evenly spaced through the list "
                                                              "(a quick check; results.json records it)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the results already in --out"),
    wise_ft: Optional[str] = typer.Option(None, "--wise-ft", metavar="ALPHA[,ALPHA…]",
                                          help="evaluate the weight-space ensembles (1 - α)·A + α·B, B = "
                                               "--checkpoint, A = --clip (zero-shot CLIP) or --wise-ft-from; one "
                                               "row per α, each α's files in OUT/alpha-<α>"),
    wise_ft_from: Optional[str] = typer.Option(None, "--wise-ft-from", metavar="MODEL",
                                               help="model A of --wise-ft when it is not --clip: a vifi "
                                                    "checkpoint, run folder, paper .pth or CLIP weights"),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    from vifi import console
    from vifi.config import check_cli_values
    from vifi.errors import VifiError
    from vifi.fileio import check_output_path

    console.reserve_stdout(as_json)
    check_cli_values(frames=frames, batch=batch, workers=workers, device=device)
    if out is not None:
        check_output_path(out, folder=True)  # before any computing
    wise = _wise_ft_request(wise_ft, wise_ft_from, clip, arch)
    if protocol is None and suite is None:
        model_flag = "--checkpoint (model B of --wise-ft)" if wise else "--checkpoint (or --clip for plain CLIP)"
        missing = [f for f, v in ((model_flag, checkpoint or (clip if not wise else None)), ("--data", data),
                                  ("--labels", labels), ("--root", root), ("--out", out)) if not v]
        if missing:
            raise VifiError(f"vifi eval needs {', '.join(missing)} (or --protocol for a protocol run)")
        check_backend(backend)
        clips, crops = parse_views(views or "1x1")
        if wise:
            from vifi.wise_ft import run_wise_ft_eval

            run_wise_ft_eval(wise, checkpoint, data, labels, root, out, frames=frames, clips=clips, crops=crops,
                             batch=batch, num_workers=workers, device=device, vanilla=vanilla,
                             reference_multiclip=reference_multiclip, skip_undecodable=skip_undecodable,
                             backend=backend, limit=limit, overwrite=overwrite, compile=compile_)
            _print_results_json(out, as_json)
            return
        from vifi.runs import run_eval

        run_eval(checkpoint, data, labels, root, out, frames=frames, clips=clips, crops=crops, batch=batch,
                 num_workers=workers, device=device, vanilla=vanilla,
                 reference_multiclip=reference_multiclip, clip=clip, skip_undecodable=skip_undecodable, arch=arch,
                 backend=backend, limit=limit, overwrite=overwrite, compile=compile_)
        _print_results_json(out, as_json)
        return
    if out is None:
        raise VifiError("--protocol needs --out (the folder for the per-split runs and the aggregated table)")
    if limit is not None or overwrite:
        raise VifiError("--limit and --overwrite apply to a single evaluation, not to --protocol/--suite runs "
                        "(a protocol run resumes in its --out)")
    from vifi.cli.splits import _ints
    from vifi.protocols.suite import check_complete, load_suite

    if suite is not None:
        the_suite = load_suite(suite)
        if protocol is not None and protocol != the_suite.protocol:
            raise VifiError(f"--protocol {protocol} contradicts suite {suite} (protocol: {the_suite.protocol})")
        if checkpoint:
            the_suite.checkpoint = checkpoint
        check_complete(the_suite, partial)
    else:
        the_suite = _suite_from_flags(protocol, checkpoint, data, labels, root, splits, dataset,
                                      _ints(seeds, "--seeds"), _ints(shots, "--shots"), recipe)
    from vifi.protocols.report import run_and_report

    default_views = "4x3" if the_suite.protocol == "supervised" else "1x1"
    settings = dict(train=train, overrides=list(set_ or []), batch=batch, num_workers=workers, device=device,
                    views=parse_views(views or the_suite.views or default_views))
    if wise:
        from vifi.wise_ft import run_and_report_wise_ft

        run_and_report_wise_ft(wise, the_suite, out, **settings)
    else:
        run_and_report(the_suite, out, **settings)
    _print_results_json(out, as_json)


def _wise_ft_request(alphas: Optional[str], model_a: Optional[str], clip: Optional[str], arch: str):
    """--wise-ft's α values and its model A (--wise-ft-from, else --clip), checked before any work."""
    from vifi.errors import VifiError

    if alphas is None:
        if model_a is not None:
            raise VifiError("--wise-ft-from names model A of --wise-ft; give --wise-ft ALPHA[,ALPHA…] too")
        return None
    from vifi.model.merge import check_side_exists, parse_alphas
    from vifi.wise_ft import WiseFt

    values = parse_alphas(alphas, "--wise-ft")
    if model_a is not None:
        check_side_exists(model_a, "--wise-ft-from", arch)
    if not (model_a or clip):
        raise VifiError("--wise-ft needs model A, the α = 0 end: --clip WEIGHTS (the zero-shot CLIP the model was "
                        "fine-tuned from, e.g. --clip openai) or --wise-ft-from MODEL")
    return WiseFt(values, model_a or clip, "any" if model_a else "clip", clip=clip, arch=arch)


def _print_results_json(out: Path, as_json: bool) -> None:
    if as_json:
        from vifi import console

        console.result((Path(out) / "results.json").read_text(encoding="utf-8"))


def _suite_from_flags(protocol, checkpoint, data, labels, root, splits, dataset, seeds, shots, recipe):
    from vifi.errors import VifiError
    from vifi.protocols.suite import PROTOCOLS, DatasetSuite, Suite

    if protocol not in PROTOCOLS:
        raise VifiError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if not root:
        raise VifiError("--protocol needs --root (the video folder) or a --suite file")
    ds = DatasetSuite(root=root, labels=labels, splits=splits, seeds=list(seeds), shots=list(shots), recipe=recipe)
    single = None
    if protocol in ("zeroshot", "supervised"):
        if not (data and labels and checkpoint):
            raise VifiError(f"--protocol {protocol} with flags needs --checkpoint, --data and --labels "
                            "(several lists: use a --suite file)")
        ds.sets = {"split1": data}
        single = checkpoint
    else:
        if not splits:
            raise VifiError(f"--protocol {protocol} needs --splits DIR (from `vifi splits make {protocol}`)")
        if protocol == "fewshot":
            ds.val = data
        keys = [str(s) for s in (seeds if protocol == "base2novel" else shots)]
        if checkpoint:
            given = [c for c in checkpoint.split(",") if c]
            if len(given) != len(keys):
                raise VifiError(f"--checkpoint lists {len(given)} models for {len(keys)} "
                                f"{'seeds' if protocol == 'base2novel' else 'K values'} ({', '.join(keys)})")
            ds.checkpoints = dict(zip(keys, given))
    return Suite(protocol=protocol, checkpoint=single, datasets={dataset: ds})


def register(app: typer.Typer) -> None:
    app.command("eval", help="Evaluate a checkpoint on a list, or run a whole protocol (--protocol) into one "
                             "aggregated table.\n\nExample: vifi eval --checkpoint runs/k400 --data test.txt --labels "
                             "labels.csv --root /videos --out runs/eval --json")(eval_command)
