"""effc.search"""
