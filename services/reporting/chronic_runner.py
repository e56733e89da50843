"""When the chronic-problem detection runs: every hour by the process that holds reporting's
fold lease (so one process does it), over each province's last weeks of masked texts; the CPU
work in a thread, so the service keeps answering. Also `python -m services.reporting chronic`."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from services.common.events import utcnow
from services.reporting.chronic import DEFAULT_RULES, ChronicProblem, ChronicRules, find_chronic
from services.reporting.chronic_store import ChronicProblems, ChronicTexts, problem_fields

log = logging.getLogger(__name__)


def problem_view(problem: ChronicProblem) -> dict[str, Any]:
    """A problem as the pages, the API and the exports show it (no application ids)."""
    return {
        "id": problem.id,
        **problem_fields(problem),
        "first_at": problem.first_at.isoformat(),
        "last_at": problem.last_at.isoformat(),
    }


class ChronicDetector:
    def __init__(
        self,
        texts: ChronicTexts,
        problems: ChronicProblems,
        *,
        rules: ChronicRules = DEFAULT_RULES,
        interval_seconds: float = 3600.0,
    ) -> None:
        self.texts = texts
        self.problems = problems
        self.rules = rules
        self.interval_seconds = interval_seconds

    async def run_once(self, now: datetime | None = None) -> dict[int, int]:
        """Detect in every province that has texts in the window; forget older texts. Returns
        the problems found per province."""
        now = now or utcnow()
        since = now - timedelta(weeks=self.rules.window_weeks)
        found: dict[int, int] = {}
        try:
            for province in await self.texts.provinces():
                started = time.perf_counter()
                records = await self.texts.load_window(province, since)
                problems = await asyncio.to_thread(find_chronic, records, now=now, rules=self.rules)
                await self.problems.save_problems(
                    province,
                    problems,
                    now,
                    applications=len(records),
                    duration_seconds=time.perf_counter() - started,
                )
                found[province] = len(problems)
        finally:
            # The texts serve the window only: they go even when a detection failed.
            await self.texts.forget_before(since)
        return found

    async def run(self, is_leader: Any) -> None:
        """The service's loop: `is_leader()` says whether this process holds the fold lease."""
        due = 0.0
        while True:
            try:
                if is_leader() and time.monotonic() >= due:
                    found = await self.run_once()
                    log.info("chronic problems detected", extra={"problems": found})
                    due = time.monotonic() + self.interval_seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chronic detection failed; trying again in a minute")
                due = time.monotonic() + 60
            await asyncio.sleep(5)
