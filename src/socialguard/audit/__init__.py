"""socialguard.audit"""
