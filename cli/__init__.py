"""Command-line face of clvq-judge: parses options into typed configs and calls library stages."""
