"""effc.bench"""
