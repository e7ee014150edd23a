"""A thin adapter over APScheduler 3.x: the daemon's periodic and delayed jobs.

Kept small so that it can move to APScheduler 4 without touching the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

__all__ = ["Scheduler"]

logging.getLogger("apscheduler").setLevel(logging.WARNING)


class Scheduler:
    def __init__(self) -> None:
        self._aps = BackgroundScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )

    def start(self) -> None:
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=True)

    def every(
        self,
        job_id: str,
        seconds: float,
        func: Callable[[], object],
        *,
        first_in: float | None = None,
    ) -> str:
        """Run ``func`` every ``seconds`` (first after ``first_in``, default one period);
        returns the job's id (so do the others)."""
        start = datetime.now() + timedelta(seconds=seconds if first_in is None else first_in)
        self._aps.add_job(
            func,
            IntervalTrigger(seconds=seconds, start_date=start),
            id=job_id,
            replace_existing=True,
        )
        return job_id

    def cron(self, job_id: str, crontab: str, func: Callable[[], object]) -> str:
        self._aps.add_job(func, CronTrigger.from_crontab(crontab), id=job_id, replace_existing=True)
        return job_id

    def later(self, job_id: str, delay: float, func: Callable[[], object]) -> str:
        """Run ``func`` once after ``delay`` seconds; a second call postpones it."""
        when = datetime.now() + timedelta(seconds=delay)
        self._aps.add_job(func, DateTrigger(run_date=when), id=job_id, replace_existing=True)
        return job_id

    def remove(self, job_id: str) -> None:
        if self._aps.get_job(job_id) is not None:
            self._aps.remove_job(job_id)

    def job_ids(self) -> list[str]:
        return [job.id for job in self._aps.get_jobs()]
