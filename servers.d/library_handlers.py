"""Handlers for servers.d/library.yaml."""

import datetime


def today(uri, context):
    """A resource handler: `handler(uri, context)`; a dict becomes JSON."""
    return {"date": datetime.date.today().isoformat(), "open": True, "reader": context.user_id}


async def summary(arguments, context):
    """A prompt handler: `handler(arguments, context)`; a string becomes one user message."""
    return f"Summarise the book {arguments['title']!r} in three sentences for a curious reader."
