"""Reward plugins, one module or package per family."""
