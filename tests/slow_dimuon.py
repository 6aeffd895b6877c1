"""The dimuon example, slowed down per chunk so a test can kill a run in the middle."""

import os
import time

from dimuon import DimuonProcessor


class SlowDimuon(DimuonProcessor):
    def process(self, events):
        time.sleep(float(os.environ.get("HPCKIT_TEST_SLEEP", "0.3")))
        return super().process(events)
