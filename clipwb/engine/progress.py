"""Dassl's per-batch progress line, shared by the built-in engine and the
project's trainer base, and an ETA from a moving average of batch times.

The line is Dassl 0.6.3's, field for field::

    epoch [e/E] batch [b/B] time T (avg) data D (avg) <losses> lr L eta H:MM:SS

It is printed every ``TRAIN.PRINT_FREQ`` batches (every batch when an epoch is
shorter than that), and the losses and the learning rate go to TensorBoard.
"""
import collections
import datetime
import re

__all__ = ["MovingEta", "report_batch", "ProgressLine", "parse_progress"]

#: the line as :func:`report_batch` prints it; ``loss`` is the first loss
#: meter's current value (``nan`` / ``inf`` included, for a diverged run)
PROGRESS_RE = re.compile(
    r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] time (\S+) \((\S+)\) "
    r"data \S+ \(\S+\) .*?\bloss (\S+) \(", re.M)
ProgressLine = collections.namedtuple(
    "ProgressLine", "epoch max_epoch batch num_batches batch_time avg_batch_time loss")


def parse_progress(text):
    """Every progress line of a log ``text`` as a :class:`ProgressLine`
    (numbers as int / float; the loss may be nan or inf)."""
    return [ProgressLine(int(e), int(me), int(b), int(nb), float(t), float(at), float(loss))
            for e, me, b, nb, t, at, loss in PROGRESS_RE.findall(text)]


class MovingEta:
    """Seconds left, from the mean time of the last ``window`` batches.

    Dassl multiplies the epoch's running mean by the batches left, so the
    first slow batches (model warm-up, worker start) inflate the estimate for
    a whole epoch. Here the run's first batch is dropped as soon as a second
    one is timed, and the mean covers only the recent batches; the window
    spans epochs, so a new epoch starts from a settled estimate.
    """

    def __init__(self, window=20):
        self.times = collections.deque(maxlen=window)
        self._first = None

    def update(self, seconds):
        if self._first is None and not self.times:
            self._first = seconds
            return
        self._first = None
        self.times.append(seconds)

    def per_batch(self):
        if self.times:
            return sum(self.times) / len(self.times)
        return self._first or 0.0

    def seconds_left(self, batches_left):
        return self.per_batch() * batches_left


def batches_left(trainer):
    """Training batches after the current one, to the end of the last epoch."""
    return (trainer.num_batches - trainer.batch_idx - 1
            + (trainer.max_epoch - trainer.epoch - 1) * trainer.num_batches)


def report_batch(trainer, losses, batch_time, data_time, eta_seconds):
    """Print the progress line when it is due, and log the scalars."""
    print_freq = trainer.cfg.TRAIN.PRINT_FREQ
    meet_freq = (trainer.batch_idx + 1) % print_freq == 0
    only_few_batches = trainer.num_batches < print_freq
    if meet_freq or only_few_batches:
        print(" ".join([
            "epoch [{}/{}]".format(trainer.epoch + 1, trainer.max_epoch),
            "batch [{}/{}]".format(trainer.batch_idx + 1, trainer.num_batches),
            "time {:.3f} ({:.3f})".format(batch_time.val, batch_time.avg),
            "data {:.3f} ({:.3f})".format(data_time.val, data_time.avg),
            str(losses),
            "lr {:.4e}".format(trainer.get_current_lr()),
            "eta {}".format(datetime.timedelta(seconds=int(eta_seconds))),
        ]))
    n_iter = trainer.epoch * trainer.num_batches + trainer.batch_idx
    for name, meter in losses.meters.items():
        trainer.write_scalar("train/" + name, meter.avg, n_iter)
    trainer.write_scalar("train/lr", trainer.get_current_lr(), n_iter)
