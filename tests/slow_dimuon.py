"""The dimuon example, slowed down per chunk so a test can kill a run in the middle; with $HPCKIT_TEST_WARN it
logs a warning per chunk."""

import logging
import os
import time

from dimuon import DimuonProcessor


class SlowDimuon(DimuonProcessor):
    def process(self, events):
        time.sleep(float(os.environ.get("HPCKIT_TEST_SLEEP", "0.3")))
        if os.environ.get("HPCKIT_TEST_WARN"):  # a line for the run's worker logs (hpckit.processor.worker_log)
            m = events.metadata
            logging.getLogger("slow_dimuon").warning("slow chunk %s-%s of %s", m["entrystart"], m["entrystop"],
                                                     os.path.basename(m["filename"]))
        return super().process(events)
