"""effc.runtime"""
