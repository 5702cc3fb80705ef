"""`python -m sandbox.crm`: the reference CRM (HTTP API on 8070, crm.commands consumer), one process."""
from sandbox.crm.worker import NAME, app, settings
from services.common.worker import run_worker

if __name__ == "__main__":
    run_worker(app, settings, NAME)  # which tunes the garbage collector, as for every worker
