"""Helpers shared by the test modules: the reference corpus, golden files, builders."""
