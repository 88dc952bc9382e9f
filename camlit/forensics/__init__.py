"""Beyond the ten cameras: a camera map of one photo, splice localisation, unknown-camera rejection."""
