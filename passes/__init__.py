"""effc.passes"""
