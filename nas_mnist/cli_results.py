"""CLI for export, report and dashboard (results issue)."""

COMMANDS = {}


def add_result_parsers(sub, add_storage_flags, positive, add_data_flags):
    return None
