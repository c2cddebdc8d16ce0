"""The tools the voice agent can use (function calling).

For now one built-in, read-only tool; the registry with typed, declarative
and MCP tools, the exactly-once ledger and the demo store come next.
"""

from __future__ import annotations

from livekit.agents import FunctionTool, function_tool

OPENING_HOURS = {
    "monday": "7 am to 6 pm",
    "tuesday": "7 am to 6 pm",
    "wednesday": "7 am to 6 pm",
    "thursday": "7 am to 6 pm",
    "friday": "7 am to 8 pm",
    "saturday": "8 am to 8 pm",
    "sunday": "9 am to 3 pm",
}


@function_tool
async def get_opening_hours(day: str) -> str:
    """Opening hours of the coffee shop on a day of the week.

    Args:
        day: the day of the week, e.g. "sunday"
    """
    hours = OPENING_HOURS.get(day.strip().lower())
    if hours is None:
        return f"I don't know the day {day!r}; ask for a day of the week."
    return f"On {day.strip().capitalize()} we are open {hours}."


def build_tools() -> list[FunctionTool]:
    return [get_opening_hours]
