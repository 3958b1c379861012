"""Descriptor sources (reflection, descriptor-set files) → immutable schema snapshots."""
