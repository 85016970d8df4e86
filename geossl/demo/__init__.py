"""The end-to-end demo on the built-in real scene, built from library calls."""
