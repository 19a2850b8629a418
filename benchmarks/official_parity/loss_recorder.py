"""Every logged iteration's losses at full precision (Dassl prints four
decimals): with ``PARITY_LOSS_LOG=FILE`` in the environment, the runners
wrap ``MetricMeter.update`` of the engine in use so that each update appends
one JSON line ``{name: repr(value)}`` to FILE."""
import json
import os

ENV = "PARITY_LOSS_LOG"


def install(meter_class):
    """Wrap ``meter_class.update`` when ``PARITY_LOSS_LOG`` is set."""
    path = os.environ.get(ENV)
    if not path or getattr(meter_class, "_parity_recorded", False):
        return
    update = meter_class.update

    def recorded_update(self, input_dict):
        if isinstance(input_dict, dict):
            values = {k: repr(float(v.item() if hasattr(v, "item") else v))
                      for k, v in input_dict.items()}
            with open(path, "a") as f:
                f.write(json.dumps(values) + "\n")
        return update(self, input_dict)

    meter_class.update = recorded_update
    meter_class._parity_recorded = True


def read(path):
    """The recorded updates: a list of ``{name: float}``."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in json.loads(line).items()} for line in f if line.strip()]
