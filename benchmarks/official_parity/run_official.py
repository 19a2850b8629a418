"""Run an official checkout's ``train.py`` with the outside patches.

    python benchmarks/official_parity/run_official.py --checkout PATH [--dassl PATH] \
        -- --root DATA --trainer MaPLe --config-file ... [train.py arguments]

The checkout's folder comes first on the import path (its ``clip``,
``trainers``, ``datasets``), then Dassl's source folder when ``--dassl`` is
given (otherwise an installed ``dassl``); :mod:`official_patches` is applied;
then the checkout's ``train.py`` runs as ``__main__`` in its own folder.
"""
import argparse
import os
import runpy
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = []
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", required=True, help="an official repository's folder")
    parser.add_argument("--dassl", default="", help="Dassl.pytorch's source folder")
    args = parser.parse_args(argv)
    checkout = os.path.abspath(args.checkout)
    if not os.path.isfile(os.path.join(checkout, "train.py")):
        raise SystemExit("error: {} has no train.py: give the folder of an official "
                         "CoOp-family repository as --checkout.".format(checkout))
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import official_patches  # noqa: E402 - after the path is set

    if args.dassl:
        sys.path.insert(0, os.path.abspath(args.dassl))
    official_patches.apply(checkout)
    import loss_recorder  # noqa: E402
    import dassl.utils

    loss_recorder.install(dassl.utils.MetricMeter)
    os.chdir(checkout)
    sys.argv = [os.path.join(checkout, "train.py")] + rest
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
