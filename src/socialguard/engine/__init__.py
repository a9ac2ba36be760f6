"""socialguard.engine"""
