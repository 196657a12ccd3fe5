"""The history checker catches what it claims to (no broker needed)."""

from history import _selftest


def test_history_checker_finds_lost_and_backwards_reads():
    _selftest()
