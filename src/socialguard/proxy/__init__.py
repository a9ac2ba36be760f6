"""socialguard.proxy"""
