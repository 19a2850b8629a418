"""Per-domain balanced batches for DG fine-tuning (GuiDG / CLIPood).

Each batch holds ``per_domain`` images of every source domain (the original
code zips one infinite loader per domain). Each domain's indices are walked
in a random order that is reshuffled when used up, so an epoch can have any
number of batches; ``num_batches <= 0`` means one pass over the smallest
domain. Randomness comes from Python's ``random`` (seeded by ``train.py``).
"""
import random
from collections import OrderedDict

from torch.utils.data import Sampler

from clipwb.errors import ConfigError


class DomainBalancedBatchSampler(Sampler):
    """Batch sampler (lists of indices) over the ``domain`` labels of Datum items."""

    def __init__(self, data_source, per_domain, num_batches=0):
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
        self._queues = {d: [] for d in self.groups}

    def _take(self, domain):
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

    def state_dict(self):
        """The position in each domain's shuffled order (what is left of it),
        so a resumed run draws the batches an uninterrupted one draws."""
        return {"queues": {d: list(q) for d, q in self._queues.items()}}

    def load_state_dict(self, state):
        queues = state["queues"]
        if set(queues) != set(self._queues):
            raise ValueError("sampler state of domains {} for domains {}".format(
                sorted(queues), sorted(self._queues)))
        self._queues = {d: list(queues[d]) for d in self._queues}
