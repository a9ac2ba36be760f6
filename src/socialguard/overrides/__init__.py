"""socialguard.overrides"""
