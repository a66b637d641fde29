"""Data package holding facefix's weights manifest (installed as ``facefix_weights``)."""
