"""Audits: SQL oracles over the database, and static policy checks over the code."""
