"""Board definitions (iCEBreaker / iCE40UP5K, ULX3S / ECP5-85F)."""
