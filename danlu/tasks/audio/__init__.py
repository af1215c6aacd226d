"""Audio tasks: audio classification and speech recognition, on one audio data stage."""
