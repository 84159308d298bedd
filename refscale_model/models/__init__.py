"""The RefScale network (Ref-Net + conditional INN) and its no-reference fallback routing."""
