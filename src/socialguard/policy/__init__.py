"""socialguard.policy"""
