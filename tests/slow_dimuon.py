"""The dimuon example, slowed down per chunk so a test can kill a run in the middle; with $HPCKIT_TEST_WARN it
logs a warning per chunk; with $HPCKIT_TEST_FAIL_ONCE=TAG the chunk starting at entry 5 of each file fails once
per node (a marker in the node's own /tmp, /tmp/hpckit-test-failed-TAG-*), so the engine retries it."""

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
        tag = os.environ.get("HPCKIT_TEST_FAIL_ONCE")
        if tag and events.metadata["entrystart"] == 5:
            marker = f"/tmp/hpckit-test-failed-{tag}-{os.path.basename(events.metadata['filename'])}"
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError(f"failing once on purpose ({marker})")
        return super().process(events)
