"""python -m services.mail_fetch"""
from services.common.worker import run_worker
from services.mail_fetch.delivery import MAIL_DLQ
from services.mail_fetch.worker import app, settings

run_worker(app, settings, "mail_fetch", extra_topics=(MAIL_DLQ,))
