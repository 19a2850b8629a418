"""Per-domain balanced batches for DG fine-tuning (GuiDG / CLIPood).

Each batch holds ``per_domain`` images of every source domain (the original
code zips one infinite loader per domain), domains in sorted order. How a
domain's images are drawn is ``TRAINER.<NAME>.SAMPLING``:

- ``queue`` (default): each domain's indices are walked in a random order that
  is reshuffled when used up (no repeat before every image was seen), with
  Python's ``random`` (seeded by ``train.py``);
- ``replacement`` (the official code: DomainBed's ``InfiniteDataLoader``, a
  ``RandomSampler(replacement=True)`` per domain): every index is drawn
  uniformly with replacement, independently, from the sampler's own
  ``random.Random`` (seeded once from Python's ``random``).

An epoch can have any number of batches; ``num_batches <= 0`` means one pass
over the smallest domain. ``state_dict`` / ``load_state_dict`` hold what the
next batches depend on (the queues; the private generator's state), so a
resumed run draws the batches an uninterrupted one draws.

Under torchrun every rank draws the same global batches (same seed) and keeps
its contiguous slice (the trainer wraps the loader in
:class:`~clipwb.engine.distributed.RankSlices`, as the engine does Dassl's).
"""
import random
from collections import OrderedDict

from torch.utils.data import Sampler

from clipwb.errors import ConfigError
from clipwb.trainers.kit.config import check_choice

#: values of ``TRAINER.<NAME>.SAMPLING``
SAMPLINGS = ("queue", "replacement")


def with_replacement(sampling, key):
    """True for ``replacement``, False for ``queue``; ConfigError naming ``key`` otherwise."""
    return check_choice(sampling, SAMPLINGS, key) == "replacement"


class DomainBalancedBatchSampler(Sampler):
    """Batch sampler (lists of indices) over the ``domain`` labels of Datum items."""

    def __init__(self, data_source, per_domain, num_batches=0, replacement=False):
        if per_domain < 1:
            raise ConfigError("images per domain and batch must be >= 1, got {}".format(
                per_domain))
        groups = OrderedDict()
        for index, item in enumerate(data_source):
            groups.setdefault(item.domain, []).append(index)
        if not groups:
            raise ConfigError("no training images to sample from")
        self.groups = OrderedDict(sorted(groups.items()))
        self.per_domain = per_domain
        smallest = min(len(v) for v in self.groups.values())
        self.num_batches = num_batches if num_batches > 0 else max(1, smallest // per_domain)
        self.replacement = replacement
        self._queues = {d: [] for d in self.groups}
        # Only the replacement draw has a generator of its own (the queue keeps
        # drawing from Python's ``random``, as it always has).
        self._rng = random.Random(random.getrandbits(64)) if replacement else None

    def _take(self, domain):
        if self.replacement:
            return self._rng.choices(self.groups[domain], k=self.per_domain)
        queue = self._queues[domain]
        out = []
        while len(out) < self.per_domain:
            if not queue:
                queue.extend(self.groups[domain])
                random.shuffle(queue)
            out.append(queue.pop())
        return out

    def __iter__(self):
        for _ in range(self.num_batches):
            batch = []
            for domain in self.groups:
                batch += self._take(domain)
            yield batch

    def __len__(self):
        return self.num_batches

    @property
    def batch_size(self):
        """Images in a batch: ``per_domain`` of every domain."""
        return self.per_domain * len(self.groups)

    def state_dict(self):
        """The position in each domain's shuffled order (what is left of it)
        and, drawing with replacement, the generator's state."""
        state = {"queues": {d: list(q) for d, q in self._queues.items()}}
        if self.replacement:
            state["rng"] = self._rng.getstate()
        return state

    def load_state_dict(self, state):
        queues = state["queues"]
        if set(queues) != set(self._queues):
            raise ValueError("sampler state of domains {} for domains {}".format(
                sorted(queues), sorted(self._queues)))
        if self.replacement != ("rng" in state):
            raise ValueError("sampler state of a {} sampler for a {} sampler".format(
                SAMPLINGS["rng" in state], SAMPLINGS[self.replacement]))
        self._queues = {d: list(queues[d]) for d in self._queues}
        if self.replacement:
            self._rng.setstate(state["rng"])
