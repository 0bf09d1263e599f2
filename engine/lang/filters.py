"""Document filters for user templates: money in the store's currency, dates in the store's timezone.

Rule templates and template files (Send Email) both render with ``store`` in their context (the
store's settings, no secrets); these filters read its ``currency`` and ``timezone`` from there, so
``{{ order.order_total|money }}`` is written in euros for a euro store without naming the currency.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

from ruledesk.engine.model.order import parse_datetime

DEFAULT_LOCALE = "en_US"
# Babel's named formats: {{ order.date_added|date("long", locale="fr_FR") }} -> "23 novembre 2026"
NAMED_FORMATS = ("short", "medium", "long", "full")


def _store(context: Context) -> dict[str, Any]:
    store = context.get("store")
    return store if isinstance(store, dict) else {}


@pass_context
def money(context: Context, value: Any, currency: str | None = None, locale: str = DEFAULT_LOCALE) -> str:
    """``value`` as an amount of the store's currency (or ``currency``), written as ``locale`` writes
    money: ``{{ order.order_total|money }}`` -> ``€1,234.50``; nothing for a missing value."""
    from babel.numbers import format_currency  # noqa: PLC0415 -- babel loads its locale data on first use

    if value is None or isinstance(value, Undefined) or value == "":
        return ""
    if isinstance(value, bool):
        raise ValueError(f"money: {value!r} is not an amount")
    try:
        amount = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        raise ValueError(f"money: {value!r} is not an amount") from None
    code = currency or _store(context).get("currency") or "USD"
    return format_currency(amount, str(code), locale=locale)


def _moment(context: Context, value: Any) -> _dt.datetime | _dt.date | None:
    """A datetime in the store's timezone (naive or text: UTC, as Order Desk writes dates), or a date as it is."""
    if value is None or isinstance(value, Undefined) or (isinstance(value, str) and (not value.strip() or value.startswith("0000-00-00"))):
        return None  # Order Desk's zero date is no date
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"date: {value!r} is not a date")
        value = parsed
    if isinstance(value, _dt.datetime):
        name = str(_store(context).get("timezone") or "UTC")
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"date: the store's timezone {name!r} is not a known timezone") from None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)
        return moment.astimezone(zone)
    if isinstance(value, _dt.date):
        return value
    raise ValueError(f"date: {value!r} is not a date")


def _format(context: Context, value: Any, format: str, locale: str, *, with_time: bool) -> str:
    moment = _moment(context, value)
    if moment is None:
        return ""
    if format in NAMED_FORMATS:
        from babel import dates  # noqa: PLC0415

        if with_time and isinstance(moment, _dt.datetime):
            return dates.format_datetime(moment, format, tzinfo=moment.tzinfo, locale=locale)
        return dates.format_date(moment, format, locale=locale)
    return moment.strftime(format)


@pass_context
def date(context: Context, value: Any, format: str = "%Y-%m-%d", locale: str = DEFAULT_LOCALE) -> str:
    """The day of ``value`` in the store's timezone: a strftime ``format`` or one of Babel's
    named formats (short, medium, long, full) in ``locale``."""
    return _format(context, value, format, locale, with_time=False)


@pass_context
def datetime(context: Context, value: Any, format: str = "%Y-%m-%d %H:%M", locale: str = DEFAULT_LOCALE) -> str:
    """The moment ``value`` in the store's timezone, as ``date`` does with the time of day."""
    return _format(context, value, format, locale, with_time=True)


FILTERS = {"money": money, "date": date, "datetime": datetime}
