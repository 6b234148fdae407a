"""Loading Enformer (local directory or hub name) and the embedding stage."""
