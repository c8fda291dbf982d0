"""Quartz 2.3 cron expressions: parse and compute next fire times.

A faithful port of ``org.quartz.CronExpression`` (Quartz 2.3.2): the parser keeps Quartz's
quirks (what it accepts and refuses), and :meth:`CronExpression.next_after` replays
``getTimeAfter`` on a small emulation of a lenient ``java.util.GregorianCalendar``, so
daylight-saving gaps and overlaps resolve exactly as Quartz resolves them:

* a wall time inside a spring-forward gap is read with the offset in force before the
  transition (02:30 in Berlin on a spring-forward day becomes 03:30 CEST);
* a repeated wall time in a fall-back overlap is read as the *later* (standard-time)
  instant.

That is, of the two candidate offsets Java's ``ZoneInfo.getOffsetsByWall`` takes the
smaller; every field assignment re-reads the wall time that way (which is why Quartz never
fires in the first, daylight-time copy of a repeated hour).

Deliberate differences, all about expressions Quartz cannot evaluate: one that leaves a field
empty (``getTimeAfter`` throws) and ``L-nW`` with n >= 28 (``getTimeAfter`` can loop
forever) are refused at parse time, and evaluation gives up (returns None) after
``MAX_STEPS`` field jumps. Like Quartz, years run up to the current year + 100.

Layout: ``_common`` (constants, :class:`CronError`), ``_parser`` (``buildExpression``),
``_calendar`` (lenient ``GregorianCalendar``), ``expression`` (``getTimeAfter``).
"""

from __future__ import annotations

from jobyard.core.cron._common import CronError
from jobyard.core.cron.expression import CronExpression

__all__ = ["CronError", "CronExpression"]
