"""``lossnet download bapps|tid2013|kadid10k --to DIR``: fetch a dataset, or say how to place it by hand.

Examples::

    lossnet download bapps --to ~/data/bapps                      # 2AFC val + JND (about 1.3 GB)
    lossnet download bapps --to ~/data/bapps --parts twoafc_train  # 5.3 GB, for `lossnet calibrate`
    lossnet download tid2013 --to ~/data/tid2013 --manual          # only print the manual steps
"""
from __future__ import annotations

import argparse
import sys

NAMES = ("bapps", "tid2013", "kadid10k")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download", help="download BAPPS, TID2013 or KADID-10k (resumable, size-checked, safe extraction)",
        description="Download and unpack a dataset into --to. Interrupted downloads resume; archives are "
                    "extracted safely (no paths outside the folder). On failure the manual steps are printed.")
    p.add_argument("dataset", choices=NAMES, help="which dataset")
    p.add_argument("--to", required=True, metavar="DIR", help="the folder to download into")
    p.add_argument("--parts", nargs="+", default=None, metavar="PART",
                   help="BAPPS parts: twoafc_val, twoafc_train, jnd (default: twoafc_val jnd)")
    p.add_argument("--keep-archives", action="store_true", help="keep the archives after extraction")
    p.add_argument("--manual", action="store_true", help="only print how to download and place the files by hand")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)


def cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import dataset_info, download_dataset, manual_instructions
    from ..errors import DataError

    info = dataset_info(args.dataset)
    if args.parts:
        unknown = [part for part in args.parts if part not in info.parts]
        if unknown:
            from ..errors import unknown_name

            raise unknown_name(f"{info.name} part", unknown[0], list(info.parts))
    if args.manual:
        print(manual_instructions(args.dataset, args.to))
        return 0
    try:
        root = download_dataset(args.dataset, args.to, parts=args.parts, progress=not args.no_progress,
                                keep_archives=args.keep_archives)
    except DataError as exc:  # DownloadError included
        message = str(exc)
        print(f"lossnet: download failed: {message}", file=sys.stderr)
        if "by hand" not in message:
            print("\n" + manual_instructions(args.dataset, args.to), file=sys.stderr)
        return 1
    print(f"{info.title}: ready in {root}")
    if args.dataset == "bapps":
        print(f"use: lossnet score 2afc --data {root}   (and `lossnet score jnd --data {root}`)")
    else:
        print(f"use: lossnet score mos --dataset {args.dataset} --data {root}")
    return 0
