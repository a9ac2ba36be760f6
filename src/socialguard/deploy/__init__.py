"""socialguard.deploy"""
