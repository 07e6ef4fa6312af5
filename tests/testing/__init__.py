"""Tests of trionodes.testing: the cluster model and the two fakes that serve it."""
