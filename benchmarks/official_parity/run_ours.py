"""Run this repository's ``train.py`` with the parity runs' loss recorder
(:mod:`loss_recorder`); the arguments are ``train.py``'s."""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def main():
    sys.path.insert(0, HERE)
    import loss_recorder  # noqa: E402

    sys.path.remove(HERE)
    import clipwb.engine as engine

    loss_recorder.install(engine.MetricMeter)
    sys.argv = [os.path.join(REPO, "train.py")] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
