"""`python -m sandbox.crm`: the reference CRM (HTTP API on 8070, crm.commands consumer), one process."""
import gc

from sandbox.crm.worker import NAME, app, settings
from services.common.worker import run_worker

if __name__ == "__main__":
    # What the imports made lives as long as the process: frozen, the collector no longer walks it. Each
    # full collection walked it all, ~100 ms (about 20 us of every command of a 5,000-event first sync).
    gc.freeze()
    run_worker(app, settings, NAME)
