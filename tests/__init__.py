"""effc.tests"""
