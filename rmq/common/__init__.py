"""Value types, message codec, constants, config loading and async helpers shared by every layer."""
