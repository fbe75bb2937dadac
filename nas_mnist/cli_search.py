"""CLI for search, export, report and dashboard (filled in by the search issue)."""

COMMANDS = {}


def add_search_parsers(sub, add_data_flags, add_storage_flags, positive, non_negative):
    return None
