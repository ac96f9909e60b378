"""Drills: spawn, kill and restart real worker processes, then judge the outcome from rows."""
