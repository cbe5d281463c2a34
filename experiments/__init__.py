"""Thin absl entry points over the flowjax library."""
