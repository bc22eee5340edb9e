"""Helpers for the store's tests: fault-injecting FileIO and the crash-test writer process."""
