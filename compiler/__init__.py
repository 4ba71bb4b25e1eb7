"""effc.compiler"""
