"""What the test modules share: servers, bridge processes, hostile peers, clients, tools.

No test module imports another; whatever two of them need lives here
(tests/test_layering.py checks both).
"""
